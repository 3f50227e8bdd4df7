"""A run's event log: one JSON object per line, each with a per-run sequence number.

The worker appends; the CLI, the server and the supervisor read. A reader that has seen events up to `seq` asks
for what came `after` it, so a page can rebuild its state at any time, and nothing is lost when a reader goes
away. Each event is written as one whole line in a single write to the end of the file; a write that fails (a
full disk) or comes up short is cut back off, so the log holds whole lines only, and the error is raised. The
readers hold on even so: a last line without its newline is not yet an event (its writer may be mid-write: it is
read once complete), and a damaged line (a writer killed mid-write on another machine's disk, an edit by hand)
is skipped with a warning, never an error that would end a page's stream or the run's summary.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

TERMINAL = ("succeeded", "failed", "stopped", "cancelled")
EVENT_TYPES = (
    "run_started", "epoch_started", "batch", "epoch_end", "checkpoint", "log", "heartbeat", *TERMINAL,
)


log = logging.getLogger(__name__)
_WARNED_MAX = 1000  # damaged lines already warned about, remembered so a page polling a log warns once
_warned: set[tuple[str, int]] = set()


def read_events(path: Path, after: int = 0) -> list[dict[str, Any]]:
    """The complete events with `seq` > after, in order."""
    return list(iter_events(path, after))


def iter_events(path: Path, after: int = 0) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with path.open("rb") as stream:
        offset = 0
        for raw in stream:
            if not raw.endswith(b"\n"):
                return  # a line still being written
            event = parse_line(raw, path, offset)
            offset += len(raw)
            if event is not None and event["seq"] > after:
                yield event


def parse_line(raw: bytes, path: Path, offset: int) -> dict[str, Any] | None:
    """The event a complete line holds, or None (and a warning, once) for a damaged line: not JSON, or not an
    object with a whole-number `seq` and a `type`."""
    try:
        event = json.loads(raw)
    except ValueError as error:  # JSONDecodeError, and UnicodeDecodeError for bytes that are no UTF-8
        problem = str(error)
    else:
        if isinstance(event, dict) and type(event.get("seq")) is int and isinstance(event.get("type"), str):
            return event
        problem = "not an event (an object with a whole-number seq and a type)"
    if (str(path), offset) not in _warned:
        if len(_warned) < _WARNED_MAX:
            _warned.add((str(path), offset))
        log.warning("%s: skipping the damaged line at byte %d (%s)", path, offset, problem)
    return None


class EventFollower:
    """Follows a growing event log: each call of `new_events` gives the complete events written since the last
    call (the first call: every event after `after`). It reads on from where it stopped, so following a long run
    costs what was written, not the whole log each time. A last line without its newline is left where it is and
    read on a later call, once its writer has finished it."""

    def __init__(self, path: Path, after: int = 0) -> None:
        self.path, self.after, self.offset = path, after, 0

    def new_events(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as stream:
            stream.seek(self.offset)
            data = stream.read()
        complete = data.rfind(b"\n") + 1  # a line still being written waits for its newline
        events = []
        offset = self.offset
        for raw in data[:complete].split(b"\n")[:-1]:
            event = parse_line(raw, self.path, offset)
            offset += len(raw) + 1
            if event is not None and event["seq"] > self.after:
                events.append(event)
                self.after = event["seq"]
        self.offset += complete
        return events


class EventLog:
    """Appends events to a run's events.jsonl, continuing its numbering when the run is resumed. Thread-safe:
    the heartbeat comes from its own thread. `listeners` see every event as it is written (the CLI's display)."""

    def __init__(self, path: Path, listeners: tuple[Callable[[dict[str, Any]], None], ...] = ()) -> None:
        self.path = path
        self.listeners = listeners
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        existing = read_events(path)
        self._seq = existing[-1]["seq"] if existing else 0
        self.terminal: str | None = next((e["type"] for e in reversed(existing) if e["type"] in TERMINAL), None)
        self.started = False  # a run_started in this stretch of the log
        self._cut_failed = False  # a failed write could not be cut back off the log
        self._drop_partial_line()

    def _drop_partial_line(self) -> None:
        """A worker killed mid-write leaves half a line; cut it so the next event starts on a line of its own."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with self.path.open("r+b") as stream:
                stream.truncate(data.rfind(b"\n") + 1)

    @property
    def last_seq(self) -> int:
        return self._seq

    def emit(self, type_: str, **payload: Any) -> dict[str, Any] | None:
        """Append an event and tell the listeners. A heartbeat once the run has ended, or before it has started,
        is dropped (None): the heartbeat's thread cannot know the moment the run ends."""
        if type_ not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type_!r}")
        with self._lock:
            if type_ == "heartbeat" and (self.terminal is not None or not self.started):
                return None
            if self.terminal is not None and type_ != "log":
                raise RuntimeError(f"the run already ended ({self.terminal}); no {type_} event after it")
            event = {"seq": self._seq + 1, "time": round(time.time(), 3), "type": type_, **finite(payload)}
            line = json.dumps(event, allow_nan=False, default=_plain) + "\n"
            self._append(line.encode("utf-8"))
            self._seq += 1  # only once written: an event that could not be written leaves no gap in the numbering
            if type_ in TERMINAL:
                self.terminal = type_
            elif type_ == "run_started":
                self.started = True
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:  # a broken display must not end the run: the event is written already
                log.exception("an event listener failed on %s", type_)
        return event

    def _append(self, line: bytes) -> None:
        """Write one whole line at the end of the log, or nothing at all: a failed or short write (a full disk)
        is cut back off, and raised, so no reader ever meets half an event followed by the next."""
        if self._cut_failed:  # the last failure could not be cut back: its half line goes first
            self._drop_partial_line()
            self._cut_failed = False
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(descriptor).st_size
            try:
                written = os.write(descriptor, line)
                if written != len(line):
                    raise OSError(errno.ENOSPC, f"only {written} of the {len(line)} bytes of an event were written "
                                                f"(is the disk full?)", str(self.path))
            except OSError:
                self._cut_back(descriptor, size)
                raise
        finally:
            os.close(descriptor)

    def _cut_back(self, descriptor: int, size: int) -> None:
        try:
            os.ftruncate(descriptor, size)
        except OSError:
            self._cut_failed = True
            log.exception("%s: could not cut back a half-written event; cutting it before the next", self.path)

    def reopen(self) -> None:
        """Allow events again after a terminal one: a resumed run starts a new stretch of the same log."""
        with self._lock:
            self.terminal, self.started = None, False


def finite(value: Any) -> Any:
    """The value with every NaN or infinity replaced by None (JSON has neither; a metric that could not be
    computed is null), numpy scalars made plain."""
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    if hasattr(value, "item") and not hasattr(value, "__len__"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _plain(value: Any) -> Any:
    """numpy scalars and the like, which json cannot write by itself."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} in an event")
