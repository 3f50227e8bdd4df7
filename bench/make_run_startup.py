"""From `make run` on a fresh clone to the web app answering.

    .venv/bin/python bench/make_run_startup.py [--port 8031]

Clones this repository into a scratch folder, as a newcomer would, and times `make run` there twice:
- cold: the clone has no virtual environment, so make creates one and installs everything first;
- warm: the same clone again, with its environment in place (every later `make run`).
Each time is from starting make to the Train page answering 200 with the demo dataset offered, polled every 0.2 s.
`make run` then gets SIGINT, as a user's Ctrl-C. pip's own download cache is whatever this machine has (the
machine's note in docs/benchmarks.md says which). Writes bench/results/make_run_startup.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "make_run_startup.md"
LIMIT_SECONDS = 1800.0


def time_make_run(clone: Path, home: Path, port: int) -> float:
    """Seconds from `make run` to the Train page answering with the demo dataset in its choices."""
    env = {key: value for key, value in os.environ.items() if key not in ("DISPLAY", "WAYLAND_DISPLAY", "VIRTUAL_ENV")}
    env.update(CARDMETRY_HOME=str(home), PORT=str(port))
    began = time.monotonic()
    make = subprocess.Popen(["make", "run", f"PORT={port}"], cwd=clone, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.monotonic() - began < LIMIT_SECONDS:
            if make.poll() is not None:
                raise RuntimeError(f"make run exited with status {make.returncode} before the page answered")
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/train", timeout=2.0)
                if page.status_code == 200 and "demo@" in page.text:
                    return time.monotonic() - began
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the page did not answer within {LIMIT_SECONDS:.0f} s")
    finally:
        os.killpg(make.pid, signal.SIGINT)
        try:
            make.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(make.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8031)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cardmetry-fresh-") as scratch:
        clone = Path(scratch) / "cardmetry"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        shared = REPO.parent / "shared"
        if shared.is_dir():  # the real scans sit beside the project, as in CI
            (Path(scratch) / "shared").symlink_to(shared)
        cold = time_make_run(clone, Path(scratch) / "home-cold", args.port)
        warm = time_make_run(clone, Path(scratch) / "home-warm", args.port)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    lines = [
        f"# make run to the page answering ({dt.date.today().isoformat()}, {platform.machine()}, "
        f"{os.cpu_count()} cores, commit {commit.strip()})",
        "",
        "| start | seconds to the Train page answering with the demo dataset |",
        "|---|---|",
        f"| cold: fresh clone, no virtual environment | {cold:.1f} |",
        f"| warm: the same clone, environment in place, empty home | {warm:.1f} |",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
