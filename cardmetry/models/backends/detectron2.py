"""The `detectron2` backend: Mask R-CNN from Detectron2's model-zoo configs, for users who have Detectron2.

Detectron2 is not on PyPI, so it is never a dependency: the backend is listed everywhere, marked unavailable
with the reason below until `import detectron2` works, and then refuses nothing. No other package stands in
for it (torchvision's Mask R-CNN is the separate `maskrcnn` backend).

UNTESTED: Detectron2 cannot be installed on the machines this project is developed and tested on, so the code
below that runs when it *is* importable (building the model, its losses and its predictions) has never run. It
follows Detectron2's documented interfaces (`get_cfg`, `model_zoo.get_config_file`, `build_model`, the
list-of-dicts inputs with `image`, `instances`, `height`, `width`), builds from scratch or from a user's weights
file, and never reads the model zoo's download URLs.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from cardmetry.models.base import Backend, BackendUnavailableError, ModelSpec, PredictedInstance, Target
from cardmetry.models.outlines import box_of, largest_outline

NOT_INSTALLED = (
    "the detectron2 package is not installed; it is not on PyPI — build it from source "
    "(https://github.com/facebookresearch/detectron2) and install it into this environment"
)
# variant -> the model-zoo config it is built from (only the yaml, which ships inside the detectron2 package)
CONFIGS: dict[str, str] = {
    "mask_rcnn_R_50_FPN_3x": "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml",
    "mask_rcnn_R_101_FPN_3x": "COCO-InstanceSegmentation/mask_rcnn_R_101_FPN_3x.yaml",
}


class Detectron2Backend(Backend):
    name = "detectron2"
    description = "Mask R-CNN from Detectron2's model zoo (needs Detectron2 built from source; untested here)"
    variants: Mapping[str, str] = {
        "mask_rcnn_R_50_FPN_3x": "Mask R-CNN, ResNet-50 FPN (Detectron2 model-zoo config, from scratch)",
        "mask_rcnn_R_101_FPN_3x": "Mask R-CNN, ResNet-101 FPN (Detectron2 model-zoo config, from scratch)",
    }
    default_variant = "mask_rcnn_R_50_FPN_3x"
    default_lr = 2e-4

    def unavailable_reason(self) -> str | None:
        # find_spec first: a missing package is the usual case and must not cost an import attempt's traceback.
        if importlib.util.find_spec("detectron2") is None:
            return NOT_INSTALLED
        try:
            import detectron2  # noqa: F401
        except Exception as error:  # built against another torch, a missing compiled extension...
            return f"the detectron2 package is installed but cannot be imported: {error}"
        return None

    def _require(self) -> None:
        reason = self.unavailable_reason()
        if reason:
            raise BackendUnavailableError(reason)

    def config(self, spec: ModelSpec) -> Any:
        """Detectron2's config for the spec: the model-zoo yaml with our classes, input size and no zoo weights."""
        self._require()
        from detectron2 import model_zoo
        from detectron2.config import get_cfg

        cfg = get_cfg()
        cfg.merge_from_file(model_zoo.get_config_file(CONFIGS[self.check_variant(spec.variant)]))
        cfg.MODEL.WEIGHTS = ""  # never the zoo's URL: the model-zoo weights would be downloaded
        cfg.MODEL.ROI_HEADS.NUM_CLASSES = len(spec.classes)
        cfg.MODEL.DEVICE = "cpu"  # moved by the caller with .to(device)
        # Our images arrive as [0, 1] RGB; Detectron2 normalises with PIXEL_MEAN/STD in its own 0-255 BGR units.
        cfg.INPUT.FORMAT = "RGB"
        cfg.MODEL.PIXEL_MEAN = [123.675, 116.28, 103.53]
        cfg.MODEL.PIXEL_STD = [58.395, 57.12, 57.375]
        cfg.INPUT.MIN_SIZE_TEST = spec.imgsz
        cfg.INPUT.MAX_SIZE_TEST = spec.imgsz
        return cfg

    def build(self, spec: ModelSpec) -> nn.Module:
        cfg = self.config(spec)
        from detectron2.checkpoint import DetectionCheckpointer
        from detectron2.modeling import build_model

        model = build_model(cfg)
        if spec.weights:  # a user's file (Detectron2's own .pth/.pkl format); nothing is fetched
            DetectionCheckpointer(model).load(spec.weights)
        return model

    def losses(self, model: nn.Module, images: torch.Tensor, targets: Sequence[Target]) -> dict[str, torch.Tensor]:
        self._require()
        from detectron2.structures import BitMasks, Boxes, Instances

        size = tuple(images.shape[-2:])
        inputs = []
        for image, target in zip(images, targets, strict=True):
            instances = Instances(size)
            instances.gt_boxes = Boxes(target.boxes.float())
            instances.gt_classes = target.labels.long()
            instances.gt_masks = BitMasks(target.masks.bool())
            inputs.append({"image": image * 255.0, "instances": instances, "height": size[0], "width": size[1]})
        return model(inputs)

    def predict_batch(
        self, model: nn.Module, images: torch.Tensor, spec: ModelSpec, score_threshold: float = 0.05
    ) -> list[list[PredictedInstance]]:
        self._require()
        height, width = images.shape[-2:]
        inputs = [{"image": image * 255.0, "height": height, "width": width} for image in images]
        out = []
        for result in model(inputs):
            found = result["instances"].to("cpu")
            instances = []
            for label, score, mask in zip(found.pred_classes, found.scores, found.pred_masks, strict=True):
                if float(score) < score_threshold:
                    continue
                mask_map = mask.numpy().astype(np.float32)
                polygon = largest_outline(mask_map >= 0.5)
                if polygon is not None:
                    instances.append(
                        PredictedInstance(spec.classes[int(label)], float(score), mask_map, polygon, box_of(polygon))
                    )
            out.append(instances)
        return out

    def fit(self, job: Any, callbacks: Any) -> Any:
        self._require()
        raise NotImplementedError("the detectron2 backend trains through the common torch loop (build/losses)")

    def export_onnx(self, model: nn.Module, spec: ModelSpec, path: Any) -> None:
        self._require()
        raise NotImplementedError("ONNX export of Detectron2 models needs its own tracing (detectron2.export)")
