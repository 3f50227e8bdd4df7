"""A backend small enough to train in milliseconds: it exercises the run lifecycle, not segmentation quality."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cardmetry.models.base import Backend, ModelSpec, PredictedInstance, Target
from cardmetry.models.outlines import box_of, largest_outline
from cardmetry.training.config import TrainConfig


class ToyBackend(Backend):
    name = "toy"
    description = "two convolutions (tests only)"
    variants = {"tiny": "3x3 conv, ReLU, 3x3 conv"}
    default_variant = "tiny"
    default_lr = 1e-2

    def build(self, spec: ModelSpec) -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, len(spec.classes), 3, padding=1))

    def losses(self, model: nn.Module, images: torch.Tensor, targets: Sequence[Target]) -> dict[str, torch.Tensor]:
        model.train()
        logits = model(images)
        truth = torch.zeros_like(logits)
        for i, target in enumerate(targets):
            for label, mask in zip(target.labels, target.masks, strict=True):
                truth[i, label] = torch.maximum(truth[i, label], mask.float())
        return {"bce": nn.functional.binary_cross_entropy_with_logits(logits, truth)}

    def predict_batch(
        self, model: nn.Module, images: torch.Tensor, spec: ModelSpec, score_threshold: float = 0.05
    ) -> list[list[PredictedInstance]]:
        model.eval()
        probabilities = torch.sigmoid(model(images)).cpu().numpy()
        out = []
        for per_image in probabilities:
            found = []
            for channel, class_id in enumerate(spec.classes):
                polygon = largest_outline(per_image[channel] >= 0.5)
                if polygon is not None:
                    score = float(per_image[channel][per_image[channel] >= 0.5].mean())
                    found.append(PredictedInstance(class_id, score, per_image[channel], polygon, box_of(polygon)))
            out.append(found)
        return out

    def export_onnx(self, model: nn.Module, spec: ModelSpec, path) -> None:
        wrapped = nn.Sequential(model, nn.Sigmoid()).eval()
        example = torch.zeros(1, 3, spec.imgsz, spec.imgsz)
        torch.onnx.export(wrapped, (example,), str(path), dynamo=False, opset_version=17,
                          input_names=["image"], output_names=["probabilities"])

    def decode_onnx(self, outputs, spec: ModelSpec) -> list[PredictedInstance]:
        found = []
        for channel, class_id in enumerate(spec.classes):
            probability = outputs[0][0, channel]
            polygon = largest_outline(probability >= 0.5)
            if polygon is not None:
                score = float(probability[probability >= 0.5].mean())
                found.append(PredictedInstance(class_id, score, probability, polygon, box_of(polygon)))
        return found


def tiny_config(**overrides: object) -> TrainConfig:
    settings: dict[str, object] = {
        "data": "tiny", "backend": "toy", "role": "outer", "epochs": 2, "batch": 2, "imgsz": 48,
        "border_eval_images": 0, "batch_event_seconds": 0.0, "threads": 1, "warmup_steps": 2,
    }
    settings.update(overrides)
    return TrainConfig.model_validate(settings)
