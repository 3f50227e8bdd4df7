"""A run's folder (DESIGN.md: runs/<id>/): its config, events, log, control file and checkpoints.

    runs/<id>/config.json           the TrainConfig as started
    runs/<id>/events.jsonl          the event log (events.py)
    runs/<id>/log.txt               human-readable log lines
    runs/<id>/control               "stop" or "cancel", written by whoever wants the run to end
    runs/<id>/checkpoints/last.pt   the latest checkpoint (every epoch, and where a stop ended the run)
    runs/<id>/checkpoints/best.pt   the best epoch so far by the monitored metric
    runs/<id>/model.onnx            written by `cardmetry export RUN --onnx`
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cardmetry.measure.files import write_text_atomic
from cardmetry.training.config import TrainConfig
from cardmetry.training.events import TERMINAL, iter_events

LOG_TAIL_BYTES = 256 * 1024  # read from a log's end: enough for hundreds of lines of any sane length
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
ControlRequest = Literal["stop", "cancel"]


def check_run_id(run_id: str) -> str:
    """Run ids become folder names; anything else (a path, '..') is refused before it reaches the filesystem."""
    if not _RUN_ID.match(run_id) or ".." in run_id:
        raise ValueError(f"invalid run id {run_id!r}")
    return run_id


def new_run_id(config: TrainConfig) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{config.role}-{config.backend}-{secrets.token_hex(2)}"


def create_run(runs_root: Path, config: TrainConfig) -> RunDir:
    """A new run folder holding `config`, under a fresh id."""
    run = RunDir.in_runs(runs_root, new_run_id(config))
    run.write_config(config)
    return run


@dataclass(frozen=True)
class RunDir:
    path: Path

    @classmethod
    def in_runs(cls, runs_root: Path, run_id: str) -> RunDir:
        return cls(runs_root / check_run_id(run_id))

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def config_file(self) -> Path:
        return self.path / "config.json"

    @property
    def events(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def log(self) -> Path:
        return self.path / "log.txt"

    @property
    def control(self) -> Path:
        return self.path / "control"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.pt"

    @property
    def onnx(self) -> Path:
        return self.path / "model.onnx"

    def write_config(self, config: TrainConfig) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.config_file, json.dumps(config.as_json(), indent=1))

    def read_config(self) -> TrainConfig:
        if not self.config_file.is_file():
            raise FileNotFoundError(f"{self.path}: not a run folder (no config.json)")
        return TrainConfig.model_validate_json(self.config_file.read_text(encoding="utf-8"))

    def request(self, what: ControlRequest) -> None:
        """Ask the run to stop (at the next step, keeping its best weights) or cancel (now, keeping nothing).
        A cancel overrides a stop; a stop never downgrades a cancel."""
        if what == "stop" and self.requested() == "cancel":
            return
        write_text_atomic(self.control, what)

    def requested(self) -> ControlRequest | None:
        try:
            text = self.control.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return text if text in ("stop", "cancel") else None  # type: ignore[return-value]

    def clear_request(self) -> None:
        self.control.unlink(missing_ok=True)


@dataclass(frozen=True)
class RunSummary:
    id: str
    role: str
    backend: str
    variant: str
    state: str  # the terminal event's type; "running" before one (or a worker that died: the supervisor's call)
    epoch: int  # epochs finished
    best_metric: float | None
    border_error_mm: float | None  # at the best epoch


@dataclass
class RunProgress:
    """What a run's events say so far, folded in one event at a time: `summarise` folds a whole log, the catalog
    (`store.database`) each sync's new events onto what it stored. One fold, so the two never disagree."""

    state: str = "created"
    epoch: int = 0  # epochs finished
    best_metric: float | None = None
    best_epoch: int | None = None
    best_metrics: dict[str, Any] | None = None  # the best epoch's metrics (the latest, where a backend names none)
    border_error_mm: float | None = None  # at the best epoch named by the run
    variant: str = ""  # the config's, else the backend's default as the run resolved it
    dataset_version: str | None = None

    def add(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "run_started":
            self.state = "running"
            spec = event.get("spec")
            if not self.variant and isinstance(spec, dict):
                self.variant = str(spec.get("variant") or "")
            self.dataset_version = event.get("dataset_version") or self.dataset_version
        elif kind == "epoch_end":
            self.epoch, self.best_metric = int(event["epoch"]), event.get("best_metric")
            named = event.get("best_epoch")
            if named is None or named == event["epoch"]:
                # a backend that trains in its own loop names no best epoch: its latest is what it keeps
                self.best_epoch, self.best_metrics = int(event["epoch"]), event.get("metrics") or {}
            self.border_error_mm = (self.best_metrics or {}).get("border_error_mm") if named else None
        elif kind in TERMINAL:
            self.state = kind


def summarise(run: RunDir) -> RunSummary:
    config = run.read_config()
    progress = RunProgress(variant=config.variant or "")
    for event in iter_events(run.events):
        progress.add(event)
    return RunSummary(run.id, config.role, config.backend, progress.variant, progress.state, progress.epoch,
                      progress.best_metric, progress.border_error_mm)


def run_summaries(runs_root: Path) -> list[RunSummary]:
    """Every run under `runs_root`, newest first; folders that are not runs are left out."""
    found = []
    for folder in sorted(runs_root.glob("*/config.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            found.append(summarise(RunDir(folder.parent)))
        except (ValueError, OSError):
            continue  # a damaged run folder does not hide the others
    return found


def tail_lines(path: Path, count: int, window: int | None = None) -> list[str]:
    """The file's last `count` lines ([] when it does not exist), read from its last `window` bytes (default
    LOG_TAIL_BYTES): a long run's log is not read whole for a few lines."""
    try:
        with path.open("rb") as stream:
            stream.seek(0, 2)
            size = stream.tell()
            stream.seek(max(0, size - (window or LOG_TAIL_BYTES)))
            data = stream.read()
    except OSError:  # not there (yet), or not readable: no lines to show
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    if len(data) < size and lines:
        lines = lines[1:]  # the first line read may have begun before the part read
    return lines[-count:]
