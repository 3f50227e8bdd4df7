"""The `maskrcnn` backend: torchvision's Mask R-CNN, one box, score and soft mask per found border.

The letterbox already gives the network a square `imgsz` input, so the detector's own transform is set not to
resize again (min_size = max_size = imgsz): boxes and masks come back in the input's pixels. That transform also
normalises the [0, 1] image the way each variant's backbone expects (`Variant.mean/std`), inside the model, so the
torch model and its ONNX export take the same input.

Cards are big: a card or its printed frame covers roughly a third to nine tenths of the input's side, and it is
portrait (2.5 x 3.5 in), landscape, or turned some way in between. The anchors of the variants built here scale
with `imgsz` (the largest is 0.9 of it) and have height/width ratios 1/1.4, 1 and 1.4. `r50-fpn-v2` keeps
torchvision's anchors, so the region-proposal head of a user's COCO checkpoint keeps meaning what it learnt.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision.models.detection import MaskRCNN, maskrcnn_resnet50_fpn_v2
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import MultiScaleRoIAlign

from cardmetry.models.backends.backbones import FEATURE_NAMES, EffNetLite0FPN, mobilenet_v3_fpn
from cardmetry.models.base import Backend, ModelSpec, PredictedInstance, Target
from cardmetry.models.onnx_file import write_onnx
from cardmetry.models.outlines import box_of, largest_outline
from cardmetry.models.pretrained import EFFNET_LITE0_MEAN, EFFNET_LITE0_STD, IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger(__name__)

CARD_ASPECTS = (1 / 1.4, 1.0, 1.4)  # anchor height / width: landscape, turned 45 degrees, portrait
LARGEST_ANCHOR = 0.9  # of imgsz: a card filling the input's height
DETECTIONS_PER_IMAGE = 20  # a photo holds one card, or a few: 100 masks to paste would only cost time
# Fewer proposals than torchvision's defaults (2000 / 1000), which are sized for COCO's crowds of small objects.
DETECTOR_SETTINGS: dict[str, int] = {
    "rpn_pre_nms_top_n_train": 1000,
    "rpn_post_nms_top_n_train": 500,
    "rpn_pre_nms_top_n_test": 500,
    "rpn_post_nms_top_n_test": 100,
    "box_batch_size_per_image": 128,  # regions sampled per image for the box head: plenty for a card or two
    "box_detections_per_img": DETECTIONS_PER_IMAGE,
}
ONNX_OUTPUTS = ("boxes", "labels", "scores", "masks")


@dataclass(frozen=True)
class Variant:
    description: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


VARIANTS: dict[str, Variant] = {
    "effnet-lite0-fpn": Variant(
        "EfficientNet-Lite0 + FPN, ImageNet-pretrained backbone (bundled); fast on a CPU",
        EFFNET_LITE0_MEAN,
        EFFNET_LITE0_STD,
    ),
    # From scratch the choice is free: ImageNet statistics, as torchvision's own detectors use.
    "mobilenet-v3-fpn": Variant("MobileNetV3-Large + FPN, from scratch; the lightest", IMAGENET_MEAN, IMAGENET_STD),
    # torchvision's COCO checkpoints for this model expect ImageNet statistics: a user's one must keep working.
    "r50-fpn-v2": Variant(
        "ResNet-50 + FPN (torchvision v2), from scratch or a user's weights file (e.g. COCO); "
        "the most accurate and the slowest",
        IMAGENET_MEAN,
        IMAGENET_STD,
    ),
}


@dataclass(frozen=True)
class WeightsLoaded:
    """What `load_user_weights` took from a file: tensors loaded, and the names it left (other shape, or unknown)."""

    loaded: int
    skipped: tuple[str, ...]
    missing: int  # the model's tensors the file did not fill


def card_anchors(imgsz: int, levels: int) -> AnchorGenerator:
    """Anchors for big card-shaped objects: two sizes half an octave apart per level, each level half the one
    above, the largest `LARGEST_ANCHOR` of the input."""
    top = LARGEST_ANCHOR * imgsz
    sizes = []
    for level in range(levels):
        base = top / 2 ** (levels - 1 - level)
        sizes.append((max(1.0, round(base / 2**0.5, 1)), max(1.0, round(base, 1))))
    return AnchorGenerator(tuple(sizes), (CARD_ASPECTS,) * levels)


def _roi_pools() -> dict[str, nn.Module]:
    return {
        "box_roi_pool": MultiScaleRoIAlign(list(FEATURE_NAMES), output_size=7, sampling_ratio=2),
        "mask_roi_pool": MultiScaleRoIAlign(list(FEATURE_NAMES), output_size=14, sampling_ratio=2),
    }


def _build_network(spec: ModelSpec) -> nn.Module:
    variant = VARIANTS[spec.variant]
    common = {
        "num_classes": len(spec.classes) + 1,
        "min_size": spec.imgsz,
        "max_size": spec.imgsz,
        "image_mean": list(variant.mean),
        "image_std": list(variant.std),
        **DETECTOR_SETTINGS,
    }
    if spec.variant == "r50-fpn-v2":
        return maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, **common)
    backbone = EffNetLite0FPN(spec.pretrained) if spec.variant == "effnet-lite0-fpn" else mobilenet_v3_fpn()
    levels = len(FEATURE_NAMES) + 1  # the pyramid's maps and its max-pooled level
    return MaskRCNN(backbone, rpn_anchor_generator=card_anchors(spec.imgsz, levels), **_roi_pools(), **common)


def _state_dict_in(data: Any, path: Path) -> Mapping[str, torch.Tensor]:
    """The state dict inside a weights file: a bare one, or one under "model" (cardmetry's and torchvision's
    training checkpoints) or "state_dict" (Lightning's)."""
    if isinstance(data, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(data.get(key), Mapping):
                data = data[key]
                break
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ValueError(f"{path}: not a state dict (a mapping of tensor names to tensors)")
    return data


def load_user_weights(model: nn.Module, path: Path) -> WeightsLoaded:
    """Fill `model` from a user's weights file, taking every tensor whose name and shape fit: a COCO checkpoint
    (91 classes) gives everything but the class-specific heads, which keep their fresh initialisation."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    source = _state_dict_in(torch.load(path, map_location="cpu", weights_only=True), path)
    own = model.state_dict()
    fitting = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
    if not fitting:
        raise ValueError(f"{path}: none of its {len(source)} tensors fits this model (wrong variant?)")
    model.load_state_dict(fitting, strict=False)
    report = WeightsLoaded(len(fitting), tuple(sorted(set(source) - set(fitting))), len(set(own) - set(fitting)))
    log.info(
        "%s: loaded %d tensors, skipped %d (other shape or unknown name), %d of the model's left as built",
        path,
        report.loaded,
        len(report.skipped),
        report.missing,
    )
    return report


def _instances(
    labels: np.ndarray, scores: np.ndarray, masks: np.ndarray, spec: ModelSpec, score_threshold: float
) -> list[PredictedInstance]:
    """Detections (labels 1-based, 0 is background; masks (N, S, S) probabilities) to instances; a detection whose
    mask is empty at 0.5 has no outline and is dropped."""
    out = []
    for label, score, mask in zip(labels, scores, masks, strict=True):
        if score < score_threshold or not 1 <= label <= len(spec.classes):
            continue
        prob = np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0)
        polygon = largest_outline(prob >= 0.5)
        if polygon is None:
            continue
        out.append(PredictedInstance(spec.classes[int(label) - 1], float(score), prob, polygon, box_of(polygon)))
    return out


class _OnnxGraph(nn.Module):
    """The exported graph: one (1, 3, S, S) image in, the detector's four outputs out as plain tensors."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        found = self.model([images[0]])[0]
        return tuple(found[name] for name in ONNX_OUTPUTS)


class MaskRCNNBackend(Backend):
    name = "maskrcnn"
    description = "Mask R-CNN (torchvision): boxes and soft masks per instance; exports to ONNX"
    variants = {name: variant.description for name, variant in VARIANTS.items()}
    default_variant = "effnet-lite0-fpn"
    # AdamW's usual rate for fine-tuning a detector, gentle on the pretrained backbone. Not tuned on real cards: on
    # two synthetic ones, 60 steps at 1e-4 and at 1e-3 both find the card again (1e-3 fits tighter).
    default_lr = 1e-4

    def build(self, spec: ModelSpec) -> nn.Module:
        self.check_variant(spec.variant)
        if not spec.classes:
            raise ValueError("a Mask R-CNN model needs at least one class")
        model = _build_network(spec)
        if spec.weights:
            load_user_weights(model, Path(spec.weights))
        return model

    def losses(self, model: nn.Module, images: torch.Tensor, targets: Sequence[Target]) -> dict[str, torch.Tensor]:
        model.train()
        converted = [
            {"boxes": t.boxes.float().reshape(-1, 4), "labels": t.labels.long() + 1, "masks": t.masks.to(torch.uint8)}
            for t in targets
        ]
        return model(list(images), converted)

    @torch.inference_mode()
    def predict_batch(
        self, model: nn.Module, images: torch.Tensor, spec: ModelSpec, score_threshold: float = 0.05
    ) -> list[list[PredictedInstance]]:
        model.eval()
        heads = model.roi_heads
        built_threshold = heads.score_thresh
        heads.score_thresh = score_threshold  # the detector drops low scores itself, before pasting their masks
        try:
            found = model(list(images))
        finally:
            heads.score_thresh = built_threshold
        return [
            _instances(
                f["labels"].cpu().numpy(),
                f["scores"].cpu().numpy(),
                f["masks"][:, 0].float().cpu().numpy(),
                spec,
                score_threshold,
            )
            for f in found
        ]

    def export_onnx(self, model: nn.Module, spec: ModelSpec, path: Path) -> None:
        write_onnx(_OnnxGraph(model), spec, path, ONNX_OUTPUTS, {name: {0: "detections"} for name in ONNX_OUTPUTS})

    def decode_onnx(self, outputs: Sequence[np.ndarray], spec: ModelSpec) -> list[PredictedInstance]:
        boxes, labels, scores, masks = outputs
        del boxes  # each instance's box is taken from its mask's outline, as `predict_batch` does
        masks = np.asarray(masks, dtype=np.float32).reshape(-1, spec.imgsz, spec.imgsz)
        return _instances(np.asarray(labels), np.asarray(scores), masks, spec, score_threshold=0.0)
