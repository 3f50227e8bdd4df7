"""Which model file a RUN or FILE names (`cardmetry measure --outer-model`, `cardmetry export`), and the
predictors measuring uses for each role, loaded from them (the command line's models and the Grade page's alike)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from cardmetry.data.instances import GRAPHIC, OUTER
from cardmetry.store.home import Home
from cardmetry.training.runs import RunDir

if TYPE_CHECKING:  # torch loads only when a model is used: the server starts, and grades classically, without it
    from cardmetry.models.predictors import Predictor

MODEL_SUFFIXES = (".pt", ".onnx")
MODEL_ROLES = ("outer", "graphic")  # what measuring asks a model for; a run trained for "both" serves either
ROLE_CLASS = {"outer": OUTER, "graphic": GRAPHIC}  # the dataset class id a model must find to serve a role


class ModelUnavailableError(ValueError):
    """A model named for measuring that cannot be used; the message names the role, the model and why."""


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


class PredictorCache:
    """Loaded predictors by (file, modification time): a second card does not load the same model again, one file
    named for both roles is loaded once, and a model file replaced since (a resumed run's new best) is loaded
    afresh. Shared by the server's threads."""

    def __init__(self, loader: Callable[[Path], Predictor] | None = None) -> None:
        self._loader = loader  # None: the torch / onnxruntime loader, imported at the first model
        self._loaded: dict[Path, tuple[int, Predictor]] = {}
        self._lock = threading.Lock()
        self.loads = 0  # how many times a file was actually read (the cache's misses)

    def get(self, path: Path) -> Predictor:
        path = Path(path).resolve()
        mtime = path.stat().st_mtime_ns
        with self._lock:  # two requests for one new model load it once
            cached = self._loaded.get(path)
            if cached is not None and cached[0] == mtime:
                return cached[1]
            predictor = (self._loader or _load_predictor)(path)
            self.loads += 1
            self._loaded[path] = (mtime, predictor)
            return predictor


def _load_predictor(path: Path) -> Predictor:
    from cardmetry.models.predictors import load_predictor

    return load_predictor(path)


def load_role_models(
    home: Home, references: Mapping[str, str | None], cache: PredictorCache
) -> dict[str, Predictor | None]:
    """The predictor of each role that names a model (a run id or a model file, as `model_file` reads it), None
    for a role without one (the classical detector serves it). ModelUnavailableError names the role, the model and
    why: no checkpoint, a damaged file, a backend not installed, a model that finds the other border."""
    from cardmetry.models.base import BackendUnavailableError  # torch comes in with the first model, not before

    models: dict[str, Predictor | None] = dict.fromkeys(MODEL_ROLES)
    for role in MODEL_ROLES:
        reference = references.get(role)
        if not reference:
            continue
        try:
            predictor = cache.get(model_file(home, reference))
        except (OSError, ValueError, KeyError, BackendUnavailableError) as error:  # CheckpointError: a ValueError
            raise ModelUnavailableError(f"the {role} model {reference} cannot be used: {error}") from None
        if ROLE_CLASS[role] not in predictor.spec.classes:
            raise ModelUnavailableError(f"the {role} model {reference} finds classes {list(predictor.spec.classes)}, "
                                        f"not the {role} border (class {ROLE_CLASS[role]})")
        models[role] = predictor
    return models

