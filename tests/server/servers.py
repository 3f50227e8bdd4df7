"""A real `cardmetry serve` process for tests: started on a free port, waited for, and shut down with Ctrl-C.

Shared by the server tests (tests/server/test_serve.py) and the browser tests (tests/browser).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

import httpx

CARDMETRY = str(Path(sys.executable).parent / "cardmetry")  # the console script, as `make run` starts it


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(
    home: Path, port: int, *extra: str, token: str = "", output: TextIO | None = None
) -> subprocess.Popen[str]:
    """`cardmetry serve` on `port` over `home`; with a `token`, every request must carry it (as off loopback).
    Its log goes to a pipe, or to `output` for a server that lives long: it logs every request, and a pipe that
    nobody reads fills up and blocks it."""
    return subprocess.Popen(
        [CARDMETRY, "serve", "--port", str(port), "--home", str(home), "--no-browser", *extra],
        stdout=output or subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "CARDMETRY_TOKEN": token},
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


def shut_down(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGINT)  # Ctrl-C: a clean shutdown, with the status a shell gives Ctrl-C
    piped, _ = process.communicate(timeout=30)
    output = piped or ""  # a server that logged to a file: its caller reads that file
    assert process.returncode in (0, 130) and "Traceback" not in output, output
