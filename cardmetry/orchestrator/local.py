"""The local executor: training runs in worker processes on this machine, a few at a time, supervised.

Each run is a process of its own (`cardmetry.orchestrator.worker`), never a thread of the process that asked
for it, so a web server's event loop and a training loop never wait on each other. The executor keeps a queue
and `slots` workers at most (two by default: an outer and a graphic model side by side), and watches each one:
- a worker that exits without writing its run's terminal event (killed, out of memory, a crash in native code)
  gets a `failed` event written for it, with how it ended and the last lines it printed;
- a worker whose run has written nothing for `stale_seconds` (its heartbeat thread writes every 10 s) is killed
  and its run failed the same way; before its run has started (while the worker reads and refines the data,
  which writes no heartbeat) it has `start_seconds` from its launch;
- a worker that cannot be launched at all fails its run with the reason;
- a worker still running when the executor starts again (a server restart) is adopted from the run's
  `worker.json`, and one that is gone is failed for it;
- the queue outlives the executor: a queued run has a `queued.json` in its folder ({"resume": bool, "queued":
  time.time() when submitted}), removed when its worker is launched (or its run is failed or refused), so the
  next executor on the same home queues again, in their first order, the runs still waiting.
A worker starts in a session of its own, so a Ctrl-C meant for the server does not reach it; stop and cancel go
through the run's control file (`RunDir.request`), which the worker acts on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cardmetry.measure.files import write_text_atomic
from cardmetry.store.home import Home
from cardmetry.training.events import TERMINAL, EventLog, read_events
from cardmetry.training.runs import RunDir, summarise, tail_lines

WORKER_FILE = "worker.json"  # the live worker's pid and its start time, for adoption after a restart
OUTPUT_FILE = "worker.log"  # everything the worker process printed
QUEUED_FILE = "queued.json"  # a run waiting for a slot: {"resume": bool, "queued": time.time()}
TAIL_LINES = 20
log = logging.getLogger(__name__)


@dataclass
class _Worker:
    run: RunDir
    pid: int
    started: str  # the process's start time as the kernel counts it: a pid reused later has another
    process: subprocess.Popen[bytes] | None  # None for a worker adopted after a restart (not our child)
    from_seq: int  # the run's last event before the worker started: its terminal event comes after
    launched: float  # when (time.time())


class LocalExecutor:
    """Runs queued training runs in worker processes, `slots` at a time. `poll()` does one round of supervision;
    `start()` runs it every `poll_seconds` in a thread of its own until `close()`.

    `command` builds a worker's command line from (home, run id, resume); the default runs
    `python -m cardmetry.orchestrator.worker`.
    """

    def __init__(
        self,
        home: Home,
        slots: int = 2,
        *,
        stale_seconds: float = 120.0,
        start_seconds: float = 1800.0,
        poll_seconds: float = 0.5,
        command: Callable[[Home, str, bool], list[str]] | None = None,
    ) -> None:
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        self.home, self.slots = home, slots
        self.stale_seconds, self.start_seconds, self.poll_seconds = stale_seconds, start_seconds, poll_seconds
        self.command = command or worker_command
        self._queue: deque[tuple[str, bool]] = deque()
        self._workers: dict[str, _Worker] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.recover()

    # --- what callers use ------------------------------------------------------------------------------------
    def submit(self, run_id: str, resume: bool = False) -> None:
        """Queue a run whose folder holds its config; it starts when a slot is free."""
        run = _check_submittable(RunDir.in_runs(self.home.runs, run_id), resume)
        with self._lock:
            if run_id in self._workers or any(queued == run_id for queued, _ in self._queue):
                raise ValueError(f"run {run_id} is queued or running already")
            write_text_atomic(run.path / QUEUED_FILE, json.dumps({"resume": resume, "queued": time.time()}))
            self._queue.append((run_id, resume))
        self.poll()

    def queued(self) -> list[str]:
        with self._lock:
            return [run_id for run_id, _ in self._queue]

    def running(self) -> dict[str, int]:
        """Run id -> worker pid."""
        with self._lock:
            return {run_id: worker.pid for run_id, worker in self._workers.items()}

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._supervise, name="cardmetry-supervisor", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop supervising. Workers go on: they are separate processes, adopted by the next executor."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    # --- supervision ---------------------------------------------------------------------------------------
    def poll(self) -> None:
        """Reap the workers that ended, kill the stale ones, then start queued runs in the free slots."""
        with self._lock:
            for run_id, worker in list(self._workers.items()):
                try:
                    if self._supervise_one(worker):
                        del self._workers[run_id]
                except Exception:  # one run's trouble (a damaged log) must not stop the others' supervision
                    log.exception("supervising the worker of run %s failed; trying again", run_id)
            while self._queue and len(self._workers) < self.slots:
                run_id, resume = self._queue.popleft()
                worker = self._launch(RunDir.in_runs(self.home.runs, run_id), resume)
                if worker is not None:
                    self._workers[run_id] = worker

    def recover(self) -> None:
        """Adopt the workers a previous executor left running; fail the runs whose worker is gone; queue again
        the runs it left waiting."""
        if not self.home.runs.is_dir():
            return
        launched = set()
        for record in sorted(self.home.runs.glob(f"*/{WORKER_FILE}")):
            run = RunDir(record.parent)
            launched.add(run.id)
            try:
                saved = json.loads(record.read_text())
                pid, started, from_seq = int(saved["pid"]), str(saved["started"]), int(saved["from_seq"])
            except (OSError, ValueError, KeyError, TypeError):
                record.unlink(missing_ok=True)
                continue
            if _process_start(pid) == started:
                self._workers[run.id] = _Worker(run, pid, started, None, from_seq, record.stat().st_mtime)
            else:
                gone = "was gone when the executor started again (the machine or the server restarted)"
                self._end(run, from_seq, gone)
        self._queue.extend(self._waiting(launched))

    def _waiting(self, launched: set[str]) -> list[tuple[str, bool]]:
        """The runs a previous executor queued and did not launch, in the order they were queued; a marker that
        is damaged, left by a launched run, or names a run that can no longer be queued is removed."""
        waiting: list[tuple[float, str, bool]] = []
        for marker in self.home.runs.glob(f"*/{QUEUED_FILE}"):
            run = RunDir(marker.parent)
            try:
                saved = json.loads(marker.read_text())
                resume, queued = saved["resume"], float(saved["queued"])
                if run.id in launched or not isinstance(resume, bool):
                    raise ValueError("launched already, or a damaged marker")
                _check_submittable(RunDir.in_runs(self.home.runs, run.id), resume)
            except (OSError, ValueError, KeyError, TypeError) as error:
                log.warning("run %s is not queued again: %s", run.id, error)
                marker.unlink(missing_ok=True)
                continue
            waiting.append((queued, run.id, resume))
        return [(run_id, resume) for _, run_id, resume in sorted(waiting)]

    def _supervise(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll()
            except Exception:  # one bad round (a full disk) must not end the supervision of every run
                log.exception("supervising the workers failed; trying again")

    def _launch(self, run: RunDir, resume: bool) -> _Worker | None:
        events = read_events(run.events)
        from_seq = events[-1]["seq"] if events else 0
        try:
            with (run.path / OUTPUT_FILE).open("ab") as output:
                process = subprocess.Popen(
                    self.command(self.home, run.id, resume), stdout=output, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                )
        except OSError as error:
            self._end(run, from_seq, f"could not be started ({error})")
            return None
        worker = _Worker(run, process.pid, _process_start(process.pid) or "", process, from_seq, time.time())
        write_text_atomic(run.path / WORKER_FILE,
                          json.dumps({"pid": worker.pid, "started": worker.started, "from_seq": from_seq}))
        (run.path / QUEUED_FILE).unlink(missing_ok=True)  # after worker.json: a restart in between adopts it
        return worker

    def _supervise_one(self, worker: _Worker) -> bool:
        """True when the worker has ended (and its run has its terminal event)."""
        if worker.process is not None:  # our child: its exit status says it all
            code = worker.process.poll()
            alive = code is None
        else:  # adopted: alive while a process of that pid and start time exists
            code, alive = None, _process_start(worker.pid) == worker.started
        if alive:
            quiet = time.time() - _last_event_time(worker.run)
            if quiet <= self.stale_seconds:
                return False
            starting = not any(e["type"] == "run_started" for e in read_events(worker.run.events, worker.from_seq))
            if starting and time.time() - worker.launched <= self.start_seconds:
                return False
            _kill_group(worker.pid)
            if worker.process is not None:
                worker.process.wait(timeout=30)
            else:  # not our child: wait for it to be gone before its log is touched
                deadline = time.monotonic() + 30
                while _process_start(worker.pid) == worker.started and time.monotonic() < deadline:
                    time.sleep(0.05)
            reason = f"wrote nothing for {quiet:.0f} s (no heartbeat) and was killed"
        elif code is None:
            reason = "ended without a terminal event (exit status unknown: adopted after a restart)"
        else:
            reason = f"{_how_it_ended(code)} without a terminal event"
        self._end(worker.run, worker.from_seq, reason)
        return True

    def _end(self, run: RunDir, from_seq: int, reason: str) -> None:
        """Write the run's `failed` event where its worker wrote no terminal one (after `from_seq`, the last event
        before it started), saying "the run's worker " + `reason`, with the last lines of the run's log and of the
        worker's own output (a crash's traceback lands there); forget the worker."""
        if not any(event["type"] in TERMINAL for event in read_events(run.events, after=from_seq)):
            log = EventLog(run.events)  # cuts a line the worker left half written
            log.reopen()
            tail = (tail_lines(run.log, TAIL_LINES) + tail_lines(run.path / OUTPUT_FILE, TAIL_LINES))[-TAIL_LINES:]
            log.emit("failed", error=f"the run's worker {reason}", log_tail=tail, supervisor=True)
        run.clear_request()  # a stop or cancel meant for this worker must not end the run's next stretch
        (run.path / WORKER_FILE).unlink(missing_ok=True)
        (run.path / QUEUED_FILE).unlink(missing_ok=True)  # a worker that could not be launched: the run is over


def _check_submittable(run: RunDir, resume: bool) -> RunDir:
    """The run, when it may be queued: its folder holds a config, and it has not ended (`resume` False) or may
    go on (`resume` True); ValueError or FileNotFoundError naming the problem."""
    run.read_config()  # a folder without a config is refused now, not in a worker
    state = summarise(run).state  # the run's latest stretch: a terminal event's type, "running" or "created"
    ended = state if state in TERMINAL else None
    if resume and ended in ("succeeded", "cancelled"):
        raise ValueError(f"run {run.id} {ended}; there is nothing to resume")
    if not resume and ended is not None:
        raise ValueError(f"run {run.id} has ended ({ended}); resume it instead")
    return run


def worker_command(home: Home, run_id: str, resume: bool) -> list[str]:
    command = [sys.executable, "-m", "cardmetry.orchestrator.worker", run_id, "--home", str(home.root)]
    return [*command, "--resume"] if resume else command


def _how_it_ended(code: int) -> str:
    if code >= 0:
        return f"exited with status {code}"
    name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
    why = " (out of memory, or killed by hand)" if -code == signal.SIGKILL else ""
    return f"was killed by {name}{why}"


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat, field 22), or None when there is no
    such process (or it is a zombie: it has ended and only waits to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # other errors (too many open files) are not a verdict
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after the command name, which may hold spaces
    return None if fields[0] == "Z" else fields[19]


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _last_event_time(run: RunDir) -> float:
    """When the run last wrote an event, or its worker was launched, whichever is later."""
    times = [path.stat().st_mtime for path in (run.events, run.path / WORKER_FILE) if path.exists()]
    return max(times, default=time.time())
