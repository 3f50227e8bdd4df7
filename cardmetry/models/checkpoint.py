"""The checkpoint file: one `torch.save` dictionary holding everything needed to predict with a model or to
continue its training exactly (torchvision's references/detection keep the same fields).

Keys: `format`, `spec` (ModelSpec as JSON), `model` (state dict), and for training `optimizer`, `scheduler`,
`epoch` (epochs completed), `step` (optimizer steps done), `config` (the run config as JSON), `dataset` (name,
version hash), `best_metric`, `best_epoch`, `rng` (torch's generator state). Only tensors and plain containers are
stored, so every load uses `weights_only=True` and a checkpoint cannot run code.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from cardmetry.models.base import ModelSpec

CHECKPOINT_FORMAT = "cardmetry.checkpoint/v1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and what is wrong."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write whole or not at all: into a temporary file beside `path`, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save({"format": CHECKPOINT_FORMAT, **state}, partial)
    partial.replace(path)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupted?): {first_line}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a cardmetry checkpoint (expected format {CHECKPOINT_FORMAT})")
    for key in ("spec", "model"):
        if key not in state:
            raise CheckpointError(f"{path}: the checkpoint has no {key!r}")
    try:
        state["spec"] = ModelSpec.from_json(state["spec"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: the checkpoint's model spec is invalid: {error}") from None
    return state
