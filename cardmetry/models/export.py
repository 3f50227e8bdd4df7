"""Export a checkpoint to ONNX and check that onnxruntime gives what torch gives."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from cardmetry.models.base import ModelSpec
from cardmetry.models.letterbox import NetworkInput
from cardmetry.models.onnx_file import add_spec
from cardmetry.models.predictors import OnnxPredictor, model_from_checkpoint


@dataclass(frozen=True)
class ExportReport:
    path: Path
    spec: ModelSpec
    size_bytes: int
    max_mask_difference: float  # largest |torch - onnxruntime| mask probability over the network's input
    same_instances: bool  # the same classes found, in the same order
    compared: int  # instances whose masks were compared (none when an untrained model finds nothing)


def export_checkpoint(checkpoint: Path, out: Path, check_image: np.ndarray | None = None) -> ExportReport:
    """Write `checkpoint`'s model to `out` as ONNX (whole or not at all), then predict `check_image` (a mid-grey
    card on a dark ground when none is given) through torch and through onnxruntime and compare."""
    backend, model, spec = model_from_checkpoint(checkpoint)
    model.eval()
    partial = out.with_name(out.name + ".partial")
    with torch.inference_mode():
        backend.export_onnx(model, spec, partial)
    add_spec(partial, spec)
    onnx.checker.check_model(str(partial))
    partial.replace(out)
    image = check_image if check_image is not None else _check_card(spec.imgsz)
    # Compared where both give probabilities: over the network's input, before any thresholding.
    batch = NetworkInput.of(image, spec.imgsz).batch
    with torch.inference_mode():
        expected = backend.predict_batch(model, torch.from_numpy(batch), spec)[0]
    session = OnnxPredictor(out)
    found = backend.decode_onnx(session.session.run(None, {session.input_name: batch}), spec)
    expected, found = (sorted(i, key=lambda inst: inst.class_id) for i in (expected, found))
    same = [i.class_id for i in expected] == [i.class_id for i in found]
    pairs = list(zip(expected, found, strict=False))
    difference = max((float(np.abs(a.mask - b.mask).max()) for a, b in pairs), default=0.0)
    return ExportReport(out, spec, out.stat().st_size, difference, same, len(pairs))


def _check_card(size: int) -> np.ndarray:
    image = np.full((size * 2, size * 2, 3), 40, np.uint8)
    image[size // 3 : size * 5 // 3, size // 2 : size * 3 // 2] = 200
    image[size // 3 + 8 : size * 5 // 3 - 8, size // 2 + 8 : size * 3 // 2 - 8] = 90
    return image
