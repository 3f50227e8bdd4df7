"""Predict with a trained model: from a checkpoint through torch, or from an exported file through onnxruntime.

Both give the same thing: the instances found on a full-size RGB image, in its pixels (label convention). The
network sees the image letterboxed to its input size; its mask is scaled back to the full image before it is
thresholded, so outlines are as fine as the mask's interpolation allows, not the network's pixel.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from cardmetry.models.base import Backend, ModelSpec, PredictedInstance
from cardmetry.models.checkpoint import load_checkpoint
from cardmetry.models.letterbox import Letterbox, NetworkInput
from cardmetry.models.onnx_file import ONNX_SPEC_KEY
from cardmetry.models.outlines import box_of, largest_outline
from cardmetry.models.registry import get_backend


class Predictor(Protocol):
    """Finds instances on a full-size RGB image. `prepared`, where given, is that image already letterboxed to
    the predictor's input size (two models of one size share it); a predictor without a network ignores it."""

    spec: ModelSpec

    def predict(self, image: np.ndarray, prepared: NetworkInput | None = None) -> list[PredictedInstance]: ...


def network_input(image: np.ndarray, size: int, prepared: NetworkInput | None) -> NetworkInput:
    """`prepared` where it is for this image at `size`, else the image letterboxed now."""
    if prepared is not None and prepared.box.size == size and \
            (prepared.box.width, prepared.box.height) == (image.shape[1], image.shape[0]):
        return prepared
    return NetworkInput.of(image, size)


def to_full_image(instances: list[PredictedInstance], box: Letterbox) -> list[PredictedInstance]:
    """Instances over the letterboxed input, mapped to the full image (best first)."""
    out = []
    for inst in sorted(instances, key=lambda i: -i.score):
        mask = box.mask_to_image(inst.mask) >= 0.5  # kept boolean: a full-size float copy costs more than the rest
        polygon = largest_outline(mask)
        if polygon is None:
            continue
        out.append(PredictedInstance(inst.class_id, inst.score, mask, polygon, box_of(polygon)))
    return out


class TorchPredictor:
    def __init__(self, backend: Backend, model: torch.nn.Module, spec: ModelSpec, device: str = "cpu") -> None:
        self.backend, self.spec, self.device = backend, spec, torch.device(device)
        self.model = model.to(self.device).eval()

    @torch.inference_mode()
    def predict(self, image: np.ndarray, prepared: NetworkInput | None = None) -> list[PredictedInstance]:
        inputs = network_input(image, self.spec.imgsz, prepared)
        batch = torch.from_numpy(inputs.batch).to(self.device)
        return to_full_image(self.backend.predict_batch(self.model, batch, self.spec)[0], inputs.box)


class OnnxPredictor:
    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime  # imported here: measuring without an ONNX model never needs it

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # torchvision's exported mask pasting warns on every run; errors still show
        if threads:
            options.intra_op_num_threads = threads
        # Its threads sleep between runs instead of spinning: the models run beside the classical detectors
        # (models.measuring), and spinning threads took the cores those needed (measured on 2 cores: a card's
        # median 183 ms with spinning, 139 ms without; docs/benchmarks.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        metadata = self.session.get_modelmeta().custom_metadata_map
        if ONNX_SPEC_KEY not in metadata:
            raise ValueError(f"{path}: not a cardmetry ONNX export (no {ONNX_SPEC_KEY} metadata)")
        self.spec = ModelSpec.from_json(json.loads(metadata[ONNX_SPEC_KEY]))
        self.backend = get_backend(self.spec.backend)
        self.input_name = self.session.get_inputs()[0].name

    def predict(self, image: np.ndarray, prepared: NetworkInput | None = None) -> list[PredictedInstance]:
        inputs = network_input(image, self.spec.imgsz, prepared)
        outputs = self.session.run(None, {self.input_name: inputs.batch})
        return to_full_image(self.backend.decode_onnx(outputs, self.spec), inputs.box)


def model_from_checkpoint(path: Path, device: str = "cpu") -> tuple[Backend, torch.nn.Module, ModelSpec]:
    state = load_checkpoint(path, map_location=device)
    spec: ModelSpec = state["spec"]
    backend = get_backend(spec.backend)
    # The weights come from the checkpoint: nothing bundled or user-supplied is read again.
    model = backend.build(dataclasses.replace(spec, pretrained=False, weights=None))
    model.load_state_dict(state["model"])
    return backend, model, spec


def load_predictor(path: Path, device: str = "cpu") -> Predictor:
    """A predictor from a checkpoint (.pt) or an ONNX export (.onnx)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such ONNX file")
        return OnnxPredictor(path)
    backend, model, spec = model_from_checkpoint(path, device)
    return TorchPredictor(backend, model, spec, device)
