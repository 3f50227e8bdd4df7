"""Writing a network as ONNX, with the model spec in the file's metadata so the file alone is enough to use it."""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from cardmetry.models.base import ModelSpec

ONNX_SPEC_KEY = "cardmetry.spec"  # metadata_props entry holding the ModelSpec as JSON
ONNX_OPSET = 17


def add_spec(path: Path, spec: ModelSpec) -> None:
    """Store the ModelSpec in the ONNX file's metadata (replacing any there)."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = ONNX_SPEC_KEY, json.dumps(spec.as_json())
    onnx.save(model, str(path))


def write_onnx(
    graph: nn.Module,
    spec: ModelSpec,
    path: Path,
    outputs: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
) -> None:
    """Export `graph` (taking a (1, 3, imgsz, imgsz) image in [0, 1] named "images") to `path` with its spec.

    The TorchScript exporter (`dynamo=False`): the one torchvision documents Mask R-CNN with, and it handles timm's
    "same" padding; its deprecation notice and its tracer's warnings that shapes become constants (they are, by
    design: one fixed input size) are silenced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    device = next(graph.parameters()).device
    example = torch.zeros(1, 3, spec.imgsz, spec.imgsz, device=device)
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph.eval(),
            (example,),
            str(path),
            input_names=["images"],
            output_names=list(outputs),
            dynamic_axes=dict(dynamic_axes) if dynamic_axes else None,
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    add_spec(path, spec)
