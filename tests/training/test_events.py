"""The event log: numbering, resumption, half-written lines, and exactly one terminal event."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cardmetry.training.events import EventLog, read_events


def test_events_are_numbered_in_order_and_readable_after_a_sequence(tmp_path: Path) -> None:
    seen = []
    log = EventLog(tmp_path / "events.jsonl", listeners=(seen.append,))
    for epoch in range(3):
        log.emit("epoch_started", epoch=epoch)
    assert [e["seq"] for e in read_events(log.path)] == [1, 2, 3]
    assert [e["epoch"] for e in read_events(log.path, after=1)] == [1, 2]
    assert [e["seq"] for e in seen] == [1, 2, 3]


def test_numbering_continues_when_the_log_is_opened_again(tmp_path: Path) -> None:
    EventLog(tmp_path / "e.jsonl").emit("run_started")
    again = EventLog(tmp_path / "e.jsonl")
    assert again.emit("epoch_started")["seq"] == 2


def test_a_half_written_line_is_not_an_event_and_is_cut_on_reopening(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    EventLog(path).emit("run_started")
    with path.open("a") as stream:
        stream.write('{"seq": 2, "type": "bat')  # a worker killed mid-write
    assert [e["seq"] for e in read_events(path)] == [1]
    log = EventLog(path)
    log.emit("epoch_started")
    assert [e["type"] for e in read_events(path)] == ["run_started", "epoch_started"]


def test_only_log_lines_may_follow_a_terminal_event(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "e.jsonl")
    log.emit("succeeded")
    log.emit("log", message="closing")
    with pytest.raises(RuntimeError, match="already ended"):
        log.emit("failed")
    log.reopen()  # a resumed run
    log.emit("run_started")


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (float("nan"), None),  # a metric that could not be computed is null, never NaN
        (float("inf"), None),  # JSON has no infinity either
        (np.float32(0.25), 0.25),  # numpy scalars become plain numbers
        ({"a": [np.int64(3), float("-inf")]}, {"a": [3, None]}),  # nested values too
    ],
)
def test_values_json_cannot_hold_are_made_plain(tmp_path: Path, value, written) -> None:
    log = EventLog(tmp_path / "e.jsonl")
    log.emit("epoch_end", metric=value)
    assert json.loads(log.path.read_text())["metric"] == written


def test_heartbeats_come_only_between_run_started_and_the_end(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "e.jsonl")
    assert log.emit("heartbeat") is None  # the run has not started
    log.emit("run_started")
    log.emit("heartbeat")
    log.emit("failed")
    assert log.emit("heartbeat") is None  # the heartbeat's thread may beat once more after the end
    assert [e["type"] for e in read_events(log.path)] == ["run_started", "heartbeat", "failed"]


def test_unknown_event_types_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown event type"):
        EventLog(tmp_path / "e.jsonl").emit("epoch_ended")
