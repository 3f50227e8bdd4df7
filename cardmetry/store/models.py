"""Which model file a RUN or FILE names (`cardmetry measure --outer-model`, `cardmetry export`)."""

from __future__ import annotations

from pathlib import Path

from cardmetry.store.home import Home
from cardmetry.training.runs import RunDir

MODEL_SUFFIXES = (".pt", ".onnx")


def run_checkpoint(home: Home, reference: str) -> Path:
    """A checkpoint file given directly, or a run's best checkpoint (its last when no epoch has finished)."""
    path = Path(reference)
    if path.suffix in MODEL_SUFFIXES and path.is_file():
        return path
    run = _run(home, reference)
    for candidate in (run.best, run.last):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"run {run.id} has no checkpoint (cancelled, or no epoch finished)")


def model_file(home: Home, reference: str) -> Path:
    """A model file given directly (.pt or .onnx), or a run's ONNX export when it has one newer than its best
    checkpoint (onnxruntime is the faster path), else that checkpoint."""
    path = Path(reference)
    if path.is_file():
        if path.suffix not in MODEL_SUFFIXES:
            raise ValueError(f"{path}: a model file is a checkpoint (.pt) or an ONNX export (.onnx)")
        return path
    checkpoint = run_checkpoint(home, reference)
    run = _run(home, reference)
    if run.onnx.is_file() and run.onnx.stat().st_mtime >= checkpoint.stat().st_mtime:
        return run.onnx
    return checkpoint  # never exported, or trained on since (a resume): the export would be stale


def _run(home: Home, reference: str) -> RunDir:
    try:
        run = RunDir.in_runs(home.runs, reference)
    except ValueError:
        raise FileNotFoundError(f"{reference}: neither a model file nor a run id") from None
    if not run.path.is_dir():
        raise FileNotFoundError(f"{reference}: neither a model file nor a run in {home.runs}")
    return run
