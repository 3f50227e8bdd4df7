"""The local executor: runs in worker processes, a few at a time, and no run left without its terminal event."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from cardmetry.orchestrator.local import QUEUED_FILE, WORKER_FILE, LocalExecutor
from cardmetry.store.home import Home
from cardmetry.training.data import TrainData
from cardmetry.training.events import TERMINAL, EventLog, read_events
from cardmetry.training.runs import RunDir
from cardmetry.training.sources import DataSource
from tests.orchestrator.fakes import fake, new_run, wait_until
from tests.training.toy import tiny_config


def started(run: RunDir) -> bool:
    return any(e["type"] == "run_started" for e in read_events(run.events))


def terminals(run: RunDir) -> list[dict]:
    return [e for e in read_events(run.events) if e["type"] in TERMINAL]


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path / "home")


@pytest.mark.parametrize(
    ("mode", "how", "expected"),
    [
        # killed mid-run (what out of memory looks like): the supervisor says so, with the worker's last lines
        ("sleep", "kill", "was killed by SIGKILL (out of memory, or killed by hand) without a terminal event"),
        # a crash in native code, or an exit from a library: the status is named
        ("exit", None, "exited with status 3 without a terminal event"),
    ],
)
def test_a_worker_that_dies_without_a_terminal_event_gets_one(
    home: Home, mode: str, how: str | None, expected: str
) -> None:
    run = new_run(home, "r1")
    executor = LocalExecutor(home, slots=1, command=fake(mode))
    executor.submit("r1")
    pid = executor.running()["r1"]
    assert pid != os.getpid()
    wait_until(lambda: started(run) and b"epoch 1" in (run.path / "worker.log").read_bytes())
    if how == "kill":
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: (executor.poll(), not executor.running())[1])
    [failed] = terminals(run)
    assert failed["type"] == "failed" and failed["supervisor"] is True
    assert failed["error"] == f"the run's worker {expected}"
    assert "fake worker: epoch 1 of 3" in failed["log_tail"]
    assert not (run.path / WORKER_FILE).exists()


def test_a_run_that_ends_itself_is_left_as_it_ended(home: Home) -> None:
    run = new_run(home, "r1")
    executor = LocalExecutor(home, slots=1, command=fake("succeed", "0.2"))
    executor.submit("r1")
    wait_until(lambda: (executor.poll(), not executor.running())[1])
    assert [e["type"] for e in terminals(run)] == ["succeeded"]


def test_a_silent_worker_is_killed_and_its_run_failed(home: Home) -> None:
    # No event for longer than stale_seconds (a worker hung in native code writes no heartbeat).
    run = new_run(home, "r1")
    executor = LocalExecutor(home, slots=1, stale_seconds=1.0, command=fake("sleep"))
    executor.submit("r1")
    pid = executor.running()["r1"]
    wait_until(lambda: (executor.poll(), not executor.running())[1], timeout=30)
    [failed] = terminals(run)
    assert "wrote nothing for" in failed["error"] and "(no heartbeat) and was killed" in failed["error"]
    wait_until(lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text())


def test_a_worker_still_reading_its_data_has_longer_before_it_counts_as_silent(home: Home) -> None:
    # Reading and refining the data comes before the run starts and its heartbeat with it.
    run = new_run(home, "r1")
    executor = LocalExecutor(home, slots=1, stale_seconds=0.3, start_seconds=60.0, command=fake("prepare"))
    executor.submit("r1")
    time.sleep(1.0)
    executor.poll()
    assert "r1" in executor.running() and not terminals(run)
    executor.start_seconds = 0.5
    executor.poll()
    assert not executor.running()
    [failed] = terminals(run)
    assert "(no heartbeat) and was killed" in failed["error"]


def test_a_worker_that_cannot_start_fails_its_run(home: Home) -> None:
    run = new_run(home, "r1")
    executor = LocalExecutor(home, slots=1, command=lambda home, run_id, resume: [str(home.root / "no-such-program")])
    executor.submit("r1")
    assert not executor.running()
    [failed] = terminals(run)
    assert failed["error"].startswith("the run's worker could not be started (")
    assert "no-such-program" in failed["error"]


def test_slots_bound_the_workers_and_the_rest_wait_their_turn(home: Home) -> None:
    for run_id in ("a", "b", "c"):
        new_run(home, run_id)
    executor = LocalExecutor(home, slots=2, command=fake("succeed", "0.5"))
    for run_id in ("a", "b", "c"):
        executor.submit(run_id)
    assert sorted(executor.running()) == ["a", "b"] and executor.queued() == ["c"]
    most = 0
    deadline = time.monotonic() + 60
    while executor.running() or executor.queued():
        assert time.monotonic() < deadline
        executor.poll()
        most = max(most, len(executor.running()))
        time.sleep(0.05)
    assert most == 2
    for run_id in ("a", "b", "c"):
        assert [e["type"] for e in terminals(RunDir.in_runs(home.runs, run_id))] == ["succeeded"]


def test_runs_queued_when_the_executor_closes_run_under_the_next_one_in_their_order(home: Home) -> None:
    run_ids = ["c", "a", "d", "b"]  # queued in this order, which is not the order of their names
    for run_id in run_ids:
        new_run(home, run_id)
    first = LocalExecutor(home, slots=1, command=fake("succeed", "0.3"))
    for run_id in run_ids:
        first.submit(run_id)
    assert first.queued() == ["a", "d", "b"]
    first.close()  # the server stops; its worker goes on
    second = LocalExecutor(home, slots=1, command=fake("succeed", "0.3"))
    assert second.queued() == ["a", "d", "b"] and list(second.running()) == ["c"]
    launched: list[str] = []
    second.start()
    try:
        def all_ended() -> bool:
            launched.extend(run_id for run_id in second.running() if run_id not in launched)
            return all(terminals(RunDir.in_runs(home.runs, run_id)) for run_id in run_ids) and not second.running()

        wait_until(all_ended, timeout=90)
    finally:
        second.close()
    assert launched == run_ids
    for run_id in run_ids:
        run = RunDir.in_runs(home.runs, run_id)
        assert [e["type"] for e in terminals(run)] == ["succeeded"]
        assert not (run.path / QUEUED_FILE).exists()


@pytest.mark.parametrize(
    ("marker", "setup"),
    [
        ("{not json", None),  # a damaged marker
        ('{"resume": "yes", "queued": 1}', None),  # a marker whose fields are wrong
        ('{"resume": false, "queued": 1}', "ended"),  # a run that has ended since: nothing to run again
        ('{"resume": false, "queued": 1}', "no-config"),  # a folder that is no run (its config gone)
    ],
)
def test_a_marker_that_cannot_be_queued_again_is_removed(home: Home, marker: str, setup: str | None) -> None:
    run = new_run(home, "r1")
    if setup == "ended":
        EventLog(run.events).emit("succeeded")
    elif setup == "no-config":
        run.config_file.unlink()
    (run.path / QUEUED_FILE).write_text(marker)
    executor = LocalExecutor(home, slots=1, command=fake("sleep"))
    assert executor.queued() == [] and not (run.path / QUEUED_FILE).exists()


def test_a_queued_run_that_could_not_be_launched_leaves_no_marker(home: Home) -> None:
    run = new_run(home, "r1")
    executor = LocalExecutor(home, slots=1, command=lambda home, run_id, resume: [str(home.root / "no-such-program")])
    executor.submit("r1")
    assert terminals(run) and not (run.path / QUEUED_FILE).exists()
    assert LocalExecutor(home, slots=1, command=fake("sleep")).queued() == []


@pytest.mark.parametrize(
    ("run_id", "problem"),
    [
        ("r1", "is queued or running already"),  # the same run twice
        ("nothing-here", "not a run folder"),  # no config written
        ("../escape", "run id"),  # a path, not a run id
    ],
)
def test_bad_submissions_are_refused(home: Home, run_id: str, problem: str) -> None:
    new_run(home, "r1")
    executor = LocalExecutor(home, slots=1, command=fake("sleep"))
    executor.submit("r1")
    with pytest.raises((ValueError, FileNotFoundError), match=problem):
        executor.submit(run_id)
    os.killpg(executor.running()["r1"], signal.SIGKILL)


def test_a_restarted_executor_adopts_live_workers_and_fails_runs_whose_worker_is_gone(home: Home) -> None:
    alive, gone = new_run(home, "alive"), new_run(home, "gone")
    first = LocalExecutor(home, slots=2, command=fake("sleep"))
    first.submit("alive")
    pid = first.running()["alive"]
    # A worker record left by a worker that has since died (a reboot): its pid names no process now.
    (gone.path / WORKER_FILE).write_text(json.dumps({"pid": 2**22 + 1, "started": "1", "from_seq": 0}))
    second = LocalExecutor(home, slots=2, command=fake("sleep"))  # the server started again
    assert second.running() == {"alive": pid}
    [failed] = terminals(gone)
    assert "the run's worker was gone when the executor started again" in failed["error"]
    wait_until(lambda: started(alive))
    os.killpg(pid, signal.SIGKILL)
    first._workers["alive"].process.wait()  # the old server would have reaped it; here it is still its parent
    second.poll()
    [failed] = terminals(alive)
    assert "exit status unknown: adopted after a restart" in failed["error"]


def test_a_real_worker_trains_its_run_to_the_end(home: Home, tiny_cards: DataSource) -> None:
    run = new_run(home, "real", data=str(tiny_cards.root), backend="unet", imgsz=64, epochs=1, max_steps=2,
                  batch=2)
    executor = LocalExecutor(home, slots=1)
    executor.submit("real")
    wait_until(lambda: (executor.poll(), not executor.running())[1], timeout=300)
    events = read_events(run.events)
    assert [e["type"] for e in events if e["type"] in TERMINAL] == ["succeeded"], (run.path / "worker.log").read_text()
    assert events[0]["type"] == "run_started" and [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert run.last.is_file()


def test_a_data_problem_fails_the_run_in_its_worker(home: Home) -> None:
    run = new_run(home, "nodata", data=str(home.root / "missing"))
    executor = LocalExecutor(home, slots=1)
    executor.submit("nodata")
    wait_until(lambda: (executor.poll(), not executor.running())[1], timeout=120)
    [failed] = terminals(run)
    assert failed["error"].startswith("the data: ") and "missing" in failed["error"]
    assert "supervisor" not in failed  # the worker said it itself, and exited 1


def test_the_worker_data_is_what_the_cli_reads(home: Home, tiny_cards: DataSource) -> None:
    from cardmetry.orchestrator.worker import prepare

    data = prepare(home, tiny_config(data=str(tiny_cards.root)))
    assert isinstance(data, TrainData) and len(data.train) + len(data.val) == 10
