"""Stand-in workers and helpers for tests that need a worker process without training (orchestrator, server)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from cardmetry.store.home import Home
from cardmetry.training.runs import RunDir
from tests.training.toy import tiny_config

# A stand-in worker: starts its run, prints a line, then behaves as `mode` says ("prepare": never starts).
FAKE_WORKER = """
import sys, time
from pathlib import Path
from cardmetry.training.events import EventLog
log = EventLog(Path(sys.argv[1]) / "events.jsonl")
mode = sys.argv[2]
if mode == "prepare":  # still reading the data: no event yet
    time.sleep(120)
log.emit("run_started", run="fake")
print("fake worker: epoch 1 of 3", flush=True)
if mode == "succeed":
    time.sleep(float(sys.argv[3]))
    log.emit("succeeded")
    sys.exit(0)
if mode == "exit":
    sys.exit(3)
time.sleep(120)
"""


def fake(mode: str, *extra: str) -> Callable[[Home, str, bool], list[str]]:
    return lambda home, run_id, resume: [sys.executable, "-c", FAKE_WORKER, str(home.runs / run_id), mode, *extra]


def new_run(home: Home, run_id: str, **overrides: object) -> RunDir:
    run = RunDir.in_runs(home.runs, run_id)
    run.write_config(tiny_config(**overrides))
    return run


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)
