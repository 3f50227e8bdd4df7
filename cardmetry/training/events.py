"""A run's event log: one JSON object per line, each with a per-run sequence number.

The worker appends; the CLI, the server and the supervisor read. A reader that has seen events up to `seq` asks
for what came `after` it, so a page can rebuild its state at any time, and nothing is lost when a reader goes
away. Each line is written whole and flushed before the next, so a reader never sees half an event (a line
without its newline is not yet an event and is skipped until it is complete).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

TERMINAL = ("succeeded", "failed", "stopped", "cancelled")
EVENT_TYPES = (
    "run_started", "epoch_started", "batch", "epoch_end", "checkpoint", "log", "heartbeat", *TERMINAL,
)


def read_events(path: Path, after: int = 0) -> list[dict[str, Any]]:
    """The complete events with `seq` > after, in order."""
    return list(iter_events(path, after))


def iter_events(path: Path, after: int = 0) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with path.open("rb") as stream:
        for raw in stream:
            if not raw.endswith(b"\n"):
                return  # a line still being written
            event = json.loads(raw)
            if event["seq"] > after:
                yield event


class EventFollower:
    """Follows a growing event log: each call of `new_events` gives the complete events written since the last
    call (the first call: every event after `after`). It reads on from where it stopped, so following a long run
    costs what was written, not the whole log each time."""

    def __init__(self, path: Path, after: int = 0) -> None:
        self.path, self.after, self.offset = path, after, 0

    def new_events(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as stream:
            stream.seek(self.offset)
            data = stream.read()
        complete = data.rfind(b"\n") + 1  # a line still being written waits for its newline
        self.offset += complete
        events = []
        for raw in data[:complete].splitlines():
            event = json.loads(raw)
            if event["seq"] > self.after:
                events.append(event)
                self.after = event["seq"]
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
            self._seq += 1
            event = {"seq": self._seq, "time": round(time.time(), 3), "type": type_, **finite(payload)}
            line = json.dumps(event, allow_nan=False, default=_plain) + "\n"
            with self.path.open("a", encoding="utf-8") as stream:
                stream.write(line)
            if type_ in TERMINAL:
                self.terminal = type_
            elif type_ == "run_started":
                self.started = True
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:  # a broken display must not end the run: the event is written already
                logging.getLogger(__name__).exception("an event listener failed on %s", type_)
        return event

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
