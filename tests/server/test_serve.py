"""`cardmetry serve` as a user starts it: a real server process, real workers, events over a real WebSocket."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from cardmetry.store.datasets import import_dataset
from cardmetry.store.home import Home
from cardmetry.training.events import TERMINAL
from cardmetry.training.sources import DataSource
from tests.server.servers import free_port, shut_down, start_server, wait_healthy
from tests.training.toy import tiny_config


@pytest.fixture
def server(tmp_path: Path):
    port = free_port()
    process = start_server(tmp_path / "home", port)
    wait_healthy(port, process)
    yield port, tmp_path / "home"
    shut_down(process)


def start_run(port: int, source: DataSource, home: Path, **overrides: object) -> str:
    """A tiny U-Net run on the cards, stored in the server's home first (the web app trains on stored datasets)."""
    import_dataset(Home(home), "tiny", source.dataset, source.root, [])
    settings = tiny_config(data="tiny", backend="unet", imgsz=64, **overrides).as_json()
    created = httpx.post(f"http://127.0.0.1:{port}/api/runs", json=settings, timeout=30)
    assert created.status_code == 201, created.text
    return created.json()["id"]


def events_until(port: int, run_id: str, stop: object, after: int = 0, timeout: float = 240) -> list[dict]:
    """The run's events over the WebSocket, from `after` until `stop(event)` is true."""
    found: list[dict] = []
    with connect(f"ws://127.0.0.1:{port}/ws/runs/{run_id}?after={after}", open_timeout=10) as socket_:
        while not found or not stop(found[-1]):  # type: ignore[operator]
            event = json.loads(socket_.recv(timeout=timeout))
            if event["type"] != "ping":
                found.append(event)
    return found


def test_a_taken_port_is_an_error_and_a_non_zero_exit(server, tmp_path: Path) -> None:
    port, _ = server
    second = start_server(tmp_path / "other", port)
    output, _ = second.communicate(timeout=60)
    assert second.returncode == 1
    assert f"port {port} on 127.0.0.1 is taken" in " ".join(output.split())


def test_a_run_trains_in_a_worker_and_its_events_arrive_in_order(server, tiny_cards: DataSource) -> None:
    port, home = server
    run_id = start_run(port, tiny_cards, home, epochs=1, max_steps=2)
    events = events_until(port, run_id, lambda e: e["type"] in TERMINAL)
    seqs, types = [e["seq"] for e in events], [e["type"] for e in events]
    assert types[0] == "run_started" and types[-1] == "succeeded", types
    assert seqs == list(range(1, len(seqs) + 1))  # ordered, none missing
    assert "epoch_end" in types
    # A client reconnecting after the run has ended with `after` gets exactly what it had not seen.
    with connect(f"ws://127.0.0.1:{port}/ws/runs/{run_id}?after={seqs[-3]}", open_timeout=10) as socket_:
        assert [json.loads(socket_.recv(timeout=30))["seq"] for _ in range(2)] == seqs[-2:]
    assert (home / "logs" / "server.log").read_text().count("cardmetry serving") == 1



def test_a_killed_worker_is_reported_failed_with_its_reason(server, tiny_cards: DataSource) -> None:
    port, home = server
    run_id = start_run(port, tiny_cards, home, epochs=500)
    seen = events_until(port, run_id, lambda e: e["type"] == "batch")
    pid = httpx.get(f"http://127.0.0.1:{port}/api/runs/{run_id}", timeout=10).json()["worker_pid"]
    os.kill(pid, signal.SIGKILL)  # what the kernel's out-of-memory killer does
    [failed] = [e for e in events_until(port, run_id, lambda e: e["type"] in TERMINAL, after=seen[-1]["seq"])
                if e["type"] in TERMINAL]
    assert failed["type"] == "failed", failed
    assert failed["error"] == "the run's worker was killed by SIGKILL (out of memory, or killed by hand) without a " \
                              "terminal event", failed
    assert any(" INFO starting outer unet/" in line for line in failed["log_tail"]), failed  # the run's own log
    assert httpx.get(f"http://127.0.0.1:{port}/api/runs/{run_id}", timeout=10).json()["state"] == "failed"


def test_a_restarted_server_picks_up_a_run_where_it_is(tmp_path: Path, tiny_cards: DataSource) -> None:
    home, port = tmp_path / "home", free_port()
    first = start_server(home, port)
    wait_healthy(port, first)
    run_id = start_run(port, tiny_cards, home, epochs=80)  # long enough to outlive the restart
    seen = events_until(port, run_id, lambda e: e["type"] == "epoch_end")
    shut_down(first)  # the worker goes on: it is a process of its own
    second = start_server(home, port)
    try:
        wait_healthy(port, second)
        detail = httpx.get(f"http://127.0.0.1:{port}/api/runs/{run_id}", timeout=10).json()
        assert detail["state"] == "running" and detail["worker_pid"], detail  # adopted
        rest = events_until(port, run_id, lambda e: e["type"] in TERMINAL, after=seen[-1]["seq"])
        assert rest[-1]["type"] == "succeeded"
        assert [e["seq"] for e in seen + rest] == list(range(1, len(seen) + len(rest) + 1))
    finally:
        shut_down(second)
