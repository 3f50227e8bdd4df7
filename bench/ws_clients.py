"""Many pages watching one run: event delivery latency and the server's memory.

    .venv/bin/python bench/ws_clients.py [--clients 200] [--events 100] [--interval 0.05]

Starts `cardmetry serve` on a free port with a fresh home, writes a run's config and, while `--clients`
WebSocket clients watch `/ws/runs/{id}`, appends `--events` events to its log as a worker would, one every
`--interval` seconds. Each client notes when each event arrives; the latency of an event to a client is that
time less the event's own `time` (written by the same clock on the same machine). Reported: the latency's p50,
p99 and max over every (event, client) pair, events lost (must be 0), and the server's resident memory before the
clients connect and with all of them connected (VmRSS from /proc). Writes bench/results/ws_clients.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from websockets.asyncio.client import connect

from cardmetry.training.config import TrainConfig
from cardmetry.training.events import EventLog
from cardmetry.training.runs import RunDir

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "ws_clients.md"
CARDMETRY = str(Path(sys.executable).parent / "cardmetry")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def watch(url: str, expected: int, arrivals: list[tuple[int, float, float]], ready: asyncio.Event,
                connected: list[int]) -> None:
    async with connect(url, max_queue=None, open_timeout=60) as socket_:
        connected[0] += 1
        if connected[0] == connected[1]:
            ready.set()
        seen = 0
        while seen < expected:
            event = json.loads(await socket_.recv())
            if event["type"] == "ping":
                continue
            arrivals.append((event["seq"], event["time"], time.time()))
            seen += 1


async def drive(url: str, log: EventLog, clients: int, events: int, interval: float, server_pid: int) -> dict:
    arrivals: list[tuple[int, float, float]] = []
    ready, connected = asyncio.Event(), [0, clients]
    watchers = [asyncio.create_task(watch(url, events, arrivals, ready, connected)) for _ in range(clients)]
    await asyncio.wait_for(ready.wait(), 120)
    await asyncio.sleep(1.0)  # every socket's first read (the replay, here of nothing) is done
    connected_rss = rss_mb(server_pid)
    for index in range(events):
        log.emit("batch", epoch=0, batch=index, step=index, losses={"loss": 1.0 / (index + 1)})
        await asyncio.sleep(interval)
    await asyncio.wait_for(asyncio.gather(*watchers), 120)
    latencies = np.array([(received - written) * 1000 for _, written, received in arrivals])
    return {"pairs": len(arrivals), "lost": clients * events - len(arrivals), "rss_connected_mb": connected_rss,
            "p50_ms": float(np.percentile(latencies, 50)), "p99_ms": float(np.percentile(latencies, 99)),
            "max_ms": float(latencies.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between events")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        home, port = Path(scratch) / "home", free_port()
        run = RunDir(home / "runs" / "bench-run")
        run.write_config(TrainConfig.model_validate({"data": "none"}))
        log = EventLog(run.events)
        log.emit("run_started", run=run.id)
        server = subprocess.Popen([CARDMETRY, "serve", "--port", str(port), "--home", str(home), "--no-browser"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  env={**os.environ, "CARDMETRY_TOKEN": ""})
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not start")
                time.sleep(0.1)
            idle_rss = rss_mb(server.pid)
            url = f"ws://127.0.0.1:{port}/ws/runs/{run.id}?after=1"
            figures = asyncio.run(drive(url, log, args.clients, args.events, args.interval, server.pid))
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=60)
    lines = [
        "# Many WebSocket clients on one run",
        "",
        f"`.venv/bin/python bench/ws_clients.py --clients {args.clients} --events {args.events} --interval "
        f"{args.interval}` on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{os.cpu_count()} cores (the clients run on the same machine as the server).",
        "",
        "| clients | events | deliveries | lost | latency p50 ms | p99 ms | max ms | server RSS idle MB | "
        "with clients MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {args.clients} | {args.events} | {figures['pairs']} | {figures['lost']} | {figures['p50_ms']:.0f} | "
        f"{figures['p99_ms']:.0f} | {figures['max_ms']:.0f} | {idle_rss:.0f} | {figures['rss_connected_mb']:.0f} |",
    ]
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
