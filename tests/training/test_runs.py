"""A run's summary, read from its event log."""

from __future__ import annotations

from pathlib import Path

from cardmetry.training.events import EventLog
from cardmetry.training.runs import create_run, summarise
from tests.training.toy import tiny_config


def test_a_run_started_without_a_variant_is_summarised_with_the_one_it_resolved(tmp_path: Path) -> None:
    run = create_run(tmp_path / "runs", tiny_config(variant=None))
    assert summarise(run).variant == ""  # not started: nothing resolved yet
    EventLog(run.events).emit("run_started", spec={"backend": "toy", "variant": "small"})
    summary = summarise(run)
    assert (summary.state, summary.variant) == ("running", "small")


def test_a_variant_named_in_the_config_is_kept(tmp_path: Path) -> None:
    run = create_run(tmp_path / "runs", tiny_config(variant="big"))
    EventLog(run.events).emit("run_started", spec={"backend": "toy", "variant": "small"})
    assert summarise(run).variant == "big"
