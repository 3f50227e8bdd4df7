"""`cardmetry serve` as a user starts it: a real server process, real workers, events over a real WebSocket."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from cardmetry.training.events import TERMINAL
from cardmetry.training.sources import DataSource
from tests.training.toy import tiny_config

CARDMETRY = str(Path(sys.executable).parent / "cardmetry")  # the console script, as `make run` starts it


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(home: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [CARDMETRY, "serve", "--port", str(port), "--home", str(home), "--no-browser", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "CARDMETRY_TOKEN": ""},
    )


def wait_healthy(port: int, server: subprocess.Popen[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, server.stdout.read() if server.stdout else ""
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("the server did not answer")


@pytest.fixture
def server(tmp_path: Path):
    port = free_port()
    process = start_server(tmp_path / "home", port)
    wait_healthy(port, process)
    yield port, tmp_path / "home"
    process.send_signal(signal.SIGINT)  # Ctrl-C: a clean shutdown, with the status a shell gives Ctrl-C
    output, _ = process.communicate(timeout=30)
    assert process.returncode in (0, 130) and "Traceback" not in output, output


def test_a_taken_port_is_an_error_and_a_non_zero_exit(server, tmp_path: Path) -> None:
    port, _ = server
    second = start_server(tmp_path / "other", port)
    output, _ = second.communicate(timeout=60)
    assert second.returncode == 1
    assert f"port {port} on 127.0.0.1 is taken" in " ".join(output.split())


def test_a_run_trains_in_a_worker_and_its_events_arrive_in_order(server, tiny_cards: DataSource) -> None:
    port, home = server
    settings = tiny_config(data=str(tiny_cards.root), backend="unet", imgsz=64, epochs=1, max_steps=2).as_json()
    created = httpx.post(f"http://127.0.0.1:{port}/api/runs", json=settings, timeout=30)
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    seqs, types = [], []
    with connect(f"ws://127.0.0.1:{port}/ws/runs/{run_id}", open_timeout=10) as socket_:
        while not types or types[-1] not in TERMINAL:
            event = json.loads(socket_.recv(timeout=240))
            if event["type"] != "ping":
                seqs.append(event["seq"])
                types.append(event["type"])
    assert types[0] == "run_started" and types[-1] == "succeeded", types
    assert seqs == list(range(1, len(seqs) + 1))  # ordered, none missing
    assert "epoch_end" in types
    # A client reconnecting after the run has ended with `after` gets exactly what it had not seen.
    with connect(f"ws://127.0.0.1:{port}/ws/runs/{run_id}?after={seqs[-3]}", open_timeout=10) as socket_:
        assert [json.loads(socket_.recv(timeout=30))["seq"] for _ in range(2)] == seqs[-2:]
    assert (home / "logs" / "server.log").read_text().count("cardmetry serving") == 1

