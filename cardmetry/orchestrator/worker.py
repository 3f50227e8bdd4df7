"""One training run in a process of its own: `python -m cardmetry.orchestrator.worker RUN_ID [--home DIR] [--resume]`.

The run's folder holds its config already (the submitter wrote it). The worker reads the data the config names,
trains, and exits 0 when the run succeeded or was stopped, 1 otherwise. The run's event log holds the outcome
either way: a data problem found before training is a `failed` event naming it, so a supervisor or a page
watching the log never waits on a run that will not start.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cardmetry.store.datasets import data_source
from cardmetry.store.home import Home
from cardmetry.training.config import TrainConfig
from cardmetry.training.data import TrainData, prepare_data
from cardmetry.training.events import EventLog
from cardmetry.training.loop import train_run
from cardmetry.training.runs import RunDir


def prepare(home: Home, config: TrainConfig) -> TrainData:
    """The data a config names (folders or stored datasets), read, checked and refined; ValueError or
    FileNotFoundError naming the problem."""
    sources = {name: data_source(home, ref) if ref else None
               for name, ref in (("data", config.data), ("val", config.val), ("synthetic", config.synthetic))}
    return prepare_data(config, sources["data"], sources["val"], sources["synthetic"])  # type: ignore[arg-type]


def execute(
    home: Home, run: RunDir, *, resume: bool = False, listeners: tuple[Callable[[dict[str, Any]], None], ...] = ()
) -> str:
    """Prepare the run's data and train it to its end; returns the terminal event's type."""
    config = run.read_config()
    try:
        data = prepare(home, config)
    except (ValueError, FileNotFoundError) as error:
        events = EventLog(run.events, listeners)
        if resume:
            events.reopen()
        events.emit("failed", error=f"the data: {error}", log_tail=[])
        run.clear_request()
        return "failed"
    return train_run(run, config, data, resume=resume, listeners=listeners)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_id")
    parser.add_argument("--home", type=Path)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    home = Home.from_env(args.home)
    terminal = execute(home, RunDir.in_runs(home.runs, args.run_id), resume=args.resume)
    return 0 if terminal in ("succeeded", "stopped") else 1


if __name__ == "__main__":
    sys.exit(main())
