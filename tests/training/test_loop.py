"""The run lifecycle: ordered events with one terminal event, checkpoints, stop, cancel, resume, NaN, failures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cardmetry.models.checkpoint import load_checkpoint
from cardmetry.training.data import prepare_data
from cardmetry.training.events import TERMINAL, read_events
from cardmetry.training.loop import train_run
from cardmetry.training.runs import RunDir
from tests.training.toy import tiny_config


def run_dir(tmp_path: Path) -> RunDir:
    return RunDir(tmp_path / "run")


def check_sequence(events: list[dict]) -> None:
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert sum(e["type"] in TERMINAL for e in events) == 1
    assert events[-1]["type"] in TERMINAL


def test_a_run_emits_ordered_events_and_keeps_checkpoints(tiny_cards, toy_backend, tmp_path: Path) -> None:
    config = tiny_config()
    run = run_dir(tmp_path)
    assert train_run(run, config, prepare_data(config, tiny_cards)) == "succeeded"
    events = read_events(run.events)
    check_sequence(events)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "run_started"  # at once: a page never waits on the model being built
    assert kinds.count("epoch_started") == kinds.count("epoch_end") == 2
    assert "batch" in kinds and events[-1]["type"] == "succeeded"
    end = next(e for e in events if e["type"] == "epoch_end")
    for key in ("map50_box", "map50_95_box", "map50_mask", "map50_95_mask", "precision_mask", "recall_box"):
        assert 0.0 <= end["metrics"][key] <= 1.0
    assert set(end["losses"]) == {"bce"} and end["lr"] > 0 and end["eta_s"] >= 0
    saved = load_checkpoint(run.best)
    for key in ("model", "optimizer", "scheduler", "epoch", "config", "dataset", "best_metric", "step"):
        assert key in saved
    assert saved["config"]["backend"] == "toy"
    # Paths in events are the run folder's own: they reach pages and API clients, never the server's layout.
    paths = [e["path"] for e in events if e["type"] == "checkpoint"] + [events[-1]["best"]]
    assert set(paths) == {"checkpoints/last.pt", "checkpoints/best.pt"}
    log = run.log.read_text().splitlines()  # what the run page's log panel shows: the start, then each epoch
    assert " INFO starting outer toy/" in log[0] and sum(" INFO epoch " in line for line in log) == 2


def _stop_after(run: RunDir, batches: int, what: str):
    seen = []

    def listener(event: dict) -> None:
        if event["type"] == "batch":
            seen.append(event)
            if len(seen) == batches:
                run.request(what)  # type: ignore[arg-type]

    return listener


def test_stop_then_resume_reaches_the_uninterrupted_weights(tiny_cards, toy_backend, tmp_path: Path) -> None:
    config = tiny_config(epochs=3)
    data = prepare_data(config, tiny_cards)
    straight = RunDir(tmp_path / "straight")
    assert train_run(straight, config, data) == "succeeded"

    run = RunDir(tmp_path / "stopped")
    assert train_run(run, config, data, listeners=(_stop_after(run, 5, "stop"),)) == "stopped"
    stopped = load_checkpoint(run.last)
    assert 0 < stopped["step"] < load_checkpoint(straight.last)["step"]
    assert train_run(run, config, data, resume=True) == "succeeded"

    final, reference = load_checkpoint(run.last), load_checkpoint(straight.last)
    assert final["step"] == reference["step"]
    for name, tensor in reference["model"].items():
        assert torch.allclose(final["model"][name], tensor, atol=1e-6), name
    types = [e["type"] for e in read_events(run.events)]
    assert types.count("stopped") == 1 and types[-1] == "succeeded" and types.count("run_started") == 2


def test_cancel_keeps_nothing(tiny_cards, toy_backend, tmp_path: Path) -> None:
    config = tiny_config(epochs=3)
    run = run_dir(tmp_path)
    result = train_run(run, config, prepare_data(config, tiny_cards), listeners=(_stop_after(run, 6, "cancel"),))
    assert result == "cancelled"
    assert not run.checkpoints.exists()
    check_sequence(read_events(run.events))
    with pytest.raises(ValueError, match="nothing to resume"):
        train_run(run, config, prepare_data(config, tiny_cards), resume=True)


def test_a_nan_loss_fails_the_run_without_ending_the_process(tiny_cards, toy_backend, tmp_path, monkeypatch) -> None:
    from cardmetry.models.registry import get_backend

    backend = get_backend("toy")
    original = backend.losses
    calls = []

    def poisoned(model, images, targets):
        calls.append(1)
        losses = original(model, images, targets)
        return {name: value * float("nan") for name, value in losses.items()} if len(calls) == 3 else losses

    monkeypatch.setattr(backend, "losses", poisoned)
    config = tiny_config()
    run = run_dir(tmp_path)
    assert train_run(run, config, prepare_data(config, tiny_cards)) == "failed"
    events = read_events(run.events)
    check_sequence(events)
    assert "not finite" in events[-1]["error"] and "batch 3" in events[-1]["error"]


def test_an_error_inside_the_backend_fails_with_its_traceback(tiny_cards, toy_backend, tmp_path, monkeypatch) -> None:
    from cardmetry.models.registry import get_backend

    def broken(model, images, targets):
        raise RuntimeError("out of cheese")

    monkeypatch.setattr(get_backend("toy"), "losses", broken)
    config = tiny_config()
    run = run_dir(tmp_path)
    assert train_run(run, config, prepare_data(config, tiny_cards)) == "failed"
    failed = read_events(run.events)[-1]
    assert "out of cheese" in failed["error"] and "Traceback" in failed["traceback"]
    assert any("out of cheese" in line for line in failed["log_tail"])


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "not a readable checkpoint"),  # cut
        (lambda p: p.write_bytes(b"not a checkpoint at all"), "not a readable checkpoint"),  # garbage
        (lambda p: torch.save({"model": {}}, p), "not a cardmetry checkpoint"),  # someone else's file
    ],
)
def test_a_corrupted_checkpoint_fails_the_resume_naming_the_file(
    tiny_cards, toy_backend, tmp_path, damage, message
) -> None:
    config = tiny_config(epochs=3)
    data = prepare_data(config, tiny_cards)
    run = run_dir(tmp_path)
    assert train_run(run, config, data, listeners=(_stop_after(run, 2, "stop"),)) == "stopped"
    damage(run.last)
    assert train_run(run, config, data, resume=True) == "failed"
    failed = read_events(run.events)[-1]
    assert message in failed["error"] and str(run.last) in failed["error"]


def test_heartbeats_arrive_while_the_run_works(tiny_cards, toy_backend, tmp_path, monkeypatch) -> None:
    import time

    from cardmetry.models.registry import get_backend

    backend = get_backend("toy")
    original = backend.losses

    def slow(model, images, targets):
        time.sleep(0.05)
        return original(model, images, targets)

    monkeypatch.setattr(backend, "losses", slow)
    config = tiny_config(heartbeat_seconds=0.05, epochs=1)
    run = run_dir(tmp_path)
    train_run(run, config, prepare_data(config, tiny_cards))
    events = read_events(run.events)
    check_sequence(events)
    assert any(e["type"] == "heartbeat" for e in events)


def test_max_steps_and_patience_end_the_run_early(tiny_cards, toy_backend, tmp_path) -> None:
    config = tiny_config(epochs=5, max_steps=3)
    run = run_dir(tmp_path)
    assert train_run(run, config, prepare_data(config, tiny_cards)) == "succeeded"
    assert read_events(run.events)[-1]["step"] == 3


def test_a_stop_asked_before_the_run_starts_is_honoured(tiny_cards, toy_backend, tmp_path) -> None:
    config = tiny_config(epochs=3)
    run = run_dir(tmp_path)
    run.path.mkdir(parents=True)
    run.request("stop")  # e.g. from `cardmetry stop` while the data was still being read
    assert train_run(run, config, prepare_data(config, tiny_cards)) == "stopped"
    assert run.requested() is None  # acted upon: a resume is not stopped at once
    assert train_run(run, config, prepare_data(config, tiny_cards), resume=True) == "succeeded"


def test_a_failing_listener_does_not_end_the_run(tiny_cards, toy_backend, tmp_path) -> None:
    def broken(event: dict) -> None:
        raise KeyError("eta_s")

    config = tiny_config()
    run = run_dir(tmp_path)
    assert train_run(run, config, prepare_data(config, tiny_cards), listeners=(broken,)) == "succeeded"
    check_sequence(read_events(run.events))
