"""The one interface every model backend implements, and the types that cross it.

A backend builds a model for a role (the card's outer border, its graphic border, or both as two classes), gives
the training loop its losses, turns its outputs into instances (mask, polygon, score, class) and exports it to
ONNX where its framework can. Backends whose framework brings its own trainer (Ultralytics) implement `fit`
instead of `build`/`losses`, and report through the same `FitCallbacks`.

Coordinates: every polygon and box here is in the label convention of `cardmetry.data.instances` (x = 0 is the
left edge of the first pixel), in the pixels of the image that was given to `predict`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from cardmetry.data.instances import GRAPHIC, OUTER

Role = Literal["outer", "graphic", "both"]
ROLES: tuple[Role, ...] = ("outer", "graphic", "both")
ROLE_CLASSES: dict[str, tuple[int, ...]] = {"outer": (OUTER,), "graphic": (GRAPHIC,), "both": (OUTER, GRAPHIC)}


class BackendUnavailableError(RuntimeError):
    """A backend that cannot run here (its package is missing); the message says why and how to get it."""


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to build the same network again: saved in every checkpoint and ONNX file."""

    backend: str
    variant: str
    classes: tuple[int, ...]  # the dataset class ids this model predicts, in output order
    imgsz: int  # the square input side the image is letterboxed to
    pretrained: bool = True  # start from the weights a variant ships with (none download)
    weights: str | None = None  # a user-supplied weights file for the variant

    def as_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "variant": self.variant,
            "classes": list(self.classes),
            "imgsz": self.imgsz,
            "pretrained": self.pretrained,
            "weights": self.weights,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelSpec:
        return cls(
            backend=str(data["backend"]),
            variant=str(data["variant"]),
            classes=tuple(int(c) for c in data["classes"]),
            imgsz=int(data["imgsz"]),
            pretrained=bool(data.get("pretrained", True)),
            weights=data.get("weights"),
        )


@dataclass(eq=False)
class Target:
    """One training image's truth, at the network's input size: `labels` index `ModelSpec.classes` (0-based),
    `boxes` are (N, 4) x0, y0, x1, y1 pixels, `masks` are (N, H, W) uint8."""

    labels: torch.Tensor
    boxes: torch.Tensor
    masks: torch.Tensor

    def to(self, device: torch.device) -> Target:
        return Target(self.labels.to(device), self.boxes.to(device), self.masks.to(device))


@dataclass(eq=False)
class PredictedInstance:
    """One found border: its dataset class id, confidence, mask and outline polygon.

    `mask` is a (H, W) map over the image the instance was predicted on: from a backend, float32 probabilities in
    [0, 1] over the network's input; from a predictor, a boolean mask over the full image, thresholded at 0.5 after
    the probabilities were scaled up, so the outline there is not limited to the network's pixels.
    """

    class_id: int
    score: float
    mask: np.ndarray
    polygon: np.ndarray  # (N, 2) label convention
    box: tuple[float, float, float, float] = field(default=(0.0, 0.0, 0.0, 0.0))

    def as_json(self) -> dict[str, Any]:
        return {
            "class_id": self.class_id,
            "score": round(float(self.score), 4),
            "box": [round(float(v), 2) for v in self.box],
            "polygon": np.asarray(self.polygon).round(2).tolist(),
        }


@dataclass
class FitCallbacks:
    """What an own-loop backend (`Backend.fit`) reports to the run; the training layer fills these in. Epochs and
    batches count from 0 here; the events count from 1."""

    epoch_started: Callable[[int], None]
    batch: Callable[[int, int, Mapping[str, float]], None]  # epoch, batch index, losses
    epoch_end: Callable[[int, Mapping[str, Any]], None]  # epoch, metrics (losses, precision, recall, mAP...)
    should_stop: Callable[[], bool]
    log: Callable[[str], None]


class Backend:
    """A model family. Subclasses set `name`, `description`, `variants` (name -> one line) and `default_variant`,
    and either the torch-loop methods (`build`, `losses`, `predict_batch`) or `fit`."""

    name: str = ""
    description: str = ""
    variants: Mapping[str, str] = {}
    default_variant: str = ""
    default_lr: float = 1e-3
    trainable: bool = True  # False for a detector that only predicts (the classical baseline)
    own_loop: bool = False  # True when `fit` trains, with the framework's own trainer

    def unavailable_reason(self) -> str | None:
        """None when the backend can run here; otherwise why not (a missing package, and how to install it)."""
        return None

    def check_variant(self, variant: str) -> str:
        if variant not in self.variants:
            known = ", ".join(self.variants)
            raise ValueError(f"backend {self.name!r} has no variant {variant!r}; choose one of {known}")
        return variant

    # --- torch-loop backends -------------------------------------------------------------------------------
    def build(self, spec: ModelSpec) -> nn.Module:
        raise NotImplementedError(f"backend {self.name!r} does not build a torch model")

    def losses(self, model: nn.Module, images: torch.Tensor, targets: Sequence[Target]) -> dict[str, torch.Tensor]:
        """The training losses of a batch (model in train mode); their sum is what the optimizer minimises."""
        raise NotImplementedError

    def predict_batch(
        self, model: nn.Module, images: torch.Tensor, spec: ModelSpec, score_threshold: float = 0.05
    ) -> list[list[PredictedInstance]]:
        """Instances per image (model in eval mode), in the pixels of the letterboxed input."""
        raise NotImplementedError

    def export_onnx(self, model: nn.Module, spec: ModelSpec, path: Path) -> None:
        """Write the model as ONNX, taking a (1, 3, imgsz, imgsz) float image in [0, 1], with the spec in the file's
        metadata (`cardmetry.models.onnx_file.write_onnx` does both)."""
        raise NotImplementedError(f"backend {self.name!r} cannot export to ONNX")

    def decode_onnx(self, outputs: Sequence[np.ndarray], spec: ModelSpec) -> list[PredictedInstance]:
        """One image's instances from the exported model's outputs, in the pixels of the letterboxed input."""
        raise NotImplementedError

    def predictor(self, spec: ModelSpec) -> Any:
        """For a backend with no network to load (the classical detector): an object with `spec` and
        `predict(image, prepared=None) -> list[PredictedInstance]`, like `cardmetry.models.predictors.Predictor`
        (`prepared`, a letterboxed copy meant for networks, may be ignored)."""
        raise NotImplementedError(f"backend {self.name!r} predicts from a trained checkpoint")

    # --- own-loop backends ---------------------------------------------------------------------------------
    def fit(self, job: Any, callbacks: FitCallbacks) -> Path:
        """Train with the framework's own trainer; return the best weights file."""
        raise NotImplementedError
