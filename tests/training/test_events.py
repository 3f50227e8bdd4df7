"""The event log: numbering, resumption, half-written lines, and exactly one terminal event."""

from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from cardmetry.training.events import EventFollower, EventLog, read_events


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


def _write_half_then_fail(monkeypatch: pytest.MonkeyPatch, error: int | None) -> None:
    """os.write as on a disk that fills up mid-event: half the bytes are written, then OSError(error) is raised
    (error None: the short count is returned, as a write that ran out of room part-way does)."""
    real_write = os.write

    def half_write(descriptor: int, data: bytes) -> int:
        written = real_write(descriptor, data[: len(data) // 2])
        if error is not None:
            raise OSError(error, os.strerror(error))
        return written

    monkeypatch.setattr(os, "write", half_write)


@pytest.mark.parametrize(
    "error",
    [
        errno.ENOSPC,  # the disk filled up mid-event
        None,  # a short write that reports it wrote less
    ],
)
def test_an_event_the_disk_cannot_hold_is_cut_back_off_and_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: int | None
) -> None:
    log = EventLog(tmp_path / "e.jsonl")
    log.emit("run_started")
    before = log.path.read_bytes()
    with monkeypatch.context() as patched:
        _write_half_then_fail(patched, error)
        with pytest.raises(OSError) as raised:
            log.emit("epoch_end", epoch=0, metrics={"loss": 0.5})
    assert raised.value.errno == errno.ENOSPC
    assert log.path.read_bytes() == before  # no half line left for the readers
    assert log.emit("epoch_end", epoch=0)["seq"] == 2  # the failed event took no number
    assert [e["seq"] for e in read_events(log.path)] == [1, 2]


def test_a_half_line_that_could_not_be_cut_back_is_cut_before_the_next_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = EventLog(tmp_path / "e.jsonl")
    log.emit("run_started")
    with monkeypatch.context() as patched:
        _write_half_then_fail(patched, errno.ENOSPC)
        patched.setattr(os, "ftruncate", lambda descriptor, size: (_ for _ in ()).throw(OSError(errno.EIO, "EIO")))
        with pytest.raises(OSError):
            log.emit("epoch_started", epoch=0)
    assert not log.path.read_bytes().endswith(b"\n")  # the half line is still there
    log.emit("epoch_started", epoch=0)
    assert [e["type"] for e in read_events(log.path)] == ["run_started", "epoch_started"]


@pytest.mark.parametrize(
    "damage",
    [
        b'{"seq": 2, "type": "bat\n',  # an event cut off mid-line, then a line break
        b"\xff\xfe not text\n",  # bytes that are no UTF-8
        b'["a list"]\n',  # JSON, but no event
        b'{"seq": "2", "type": "batch"}\n',  # an event whose seq is no number
        b"\n",  # an empty line
    ],
)
def test_a_damaged_line_is_skipped_with_a_warning(
    tmp_path: Path, damage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "e.jsonl"
    EventLog(path).emit("run_started")
    with path.open("ab") as stream:
        stream.write(damage)
    EventLog(path).emit("epoch_started", epoch=0)  # opening it again reads it too
    follower = EventFollower(path)
    with caplog.at_level(logging.WARNING, logger="cardmetry.training.events"):
        assert [e["type"] for e in read_events(path)] == ["run_started", "epoch_started"]
        assert [e["type"] for e in follower.new_events()] == ["run_started", "epoch_started"]
    assert "skipping the damaged line" in caplog.text and str(path) in caplog.text


def test_the_follower_reads_a_line_written_in_two_halves_once_it_is_whole(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    EventLog(path).emit("run_started")
    follower = EventFollower(path)
    assert [e["seq"] for e in follower.new_events()] == [1]
    line = json.dumps({"seq": 2, "time": 1.0, "type": "epoch_started", "epoch": 0}).encode() + b"\n"
    with path.open("ab") as stream:
        stream.write(line[:20])  # a writer mid-write
        stream.flush()
        assert follower.new_events() == [] and read_events(path, after=1) == []
        stream.write(line[20:])
    [event] = follower.new_events()
    assert event == json.loads(line)
    assert follower.new_events() == []  # each event once
