"""Validation: COCO metrics through pycocotools, and the error the model leaves in millimetres at the 24 stations.

COCO metrics are computed at the network's input size (what the model sees): mAP50 and mAP50-95 from COCOeval,
for boxes and masks, and precision and recall at a score of 0.5 and an IoU of 0.5. The border error is what a
grader cares about: each validation card is measured by the measurement engine twice at full resolution, once
from its labelled outlines and once with the model's outline in place of the role's labelled one; the error is
the difference of the 24 border widths. The model's outline goes the way `cardmetry measure --outer-model` takes
it: snapped to the image's own edge nearby, checked against the classical detector's border where that finds one,
then fitted by the engine. A card refused that way counts as refused.
`corner_error_px` is how far the model's own quad (before snapping) lies from the labelled one.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from cardmetry.data.images import ImageError, load_image
from cardmetry.data.instances import GRAPHIC, OUTER, Instance, label_to_cv
from cardmetry.geometry.lines import align_quad, quad_from_polygon
from cardmetry.geometry.specs import STANDARD
from cardmetry.measure.classical import Reduced, detect_graphic, detect_outer
from cardmetry.measure.engine import measure_borders
from cardmetry.measure.result import Measurement
from cardmetry.models.base import Backend, ModelSpec, PredictedInstance, Target
from cardmetry.models.measuring import band_px, model_quad, role_quad
from cardmetry.models.predictors import TorchPredictor
from cardmetry.training.data import Sample

SCORE_THRESHOLD = 0.5
IOU_THRESHOLD = 0.5


def coco_metrics(
    targets: Sequence[Target], predictions: Sequence[Sequence[PredictedInstance]], spec: ModelSpec
) -> dict[str, float]:
    """mAP50, mAP50-95, precision and recall for boxes (`*_box`) and masks (`*_mask`)."""
    size = spec.imgsz
    images, annotations = [], []
    for image_id, target in enumerate(targets, start=1):
        images.append({"id": image_id, "width": size, "height": size})
        for label, box, mask in zip(target.labels.tolist(), target.boxes.tolist(), target.masks.numpy(), strict=True):
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            x0, y0, x1, y1 = box
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": spec.classes[label] + 1,
                "segmentation": rle, "area": float(mask_utils.area(rle)), "bbox": [x0, y0, x1 - x0, y1 - y0],
                "iscrowd": 0,
            })
    detections = []
    for image_id, found in enumerate(predictions, start=1):
        for inst in found:
            rle = mask_utils.encode(np.asfortranarray((inst.mask >= 0.5).astype(np.uint8)))
            x0, y0, x1, y1 = inst.box
            detections.append({
                "image_id": image_id, "category_id": inst.class_id + 1, "segmentation": rle,
                "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(inst.score),
            })
    truth = COCO()
    truth.dataset = {"images": images, "annotations": annotations,
                     "categories": [{"id": c + 1, "name": str(c)} for c in spec.classes]}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        truth.createIndex()
    metrics: dict[str, float] = {}
    for iou_type, suffix in (("bbox", "box"), ("segm", "mask")):
        if detections:
            with contextlib.redirect_stdout(io.StringIO()):
                found = truth.loadRes([dict(d) for d in detections])
                evaluation = COCOeval(truth, found, iou_type)
                evaluation.evaluate()
                evaluation.accumulate()
                evaluation.summarize()
            # COCOeval reports -1 where there is no ground truth at all; that is no score, not a negative one
            metrics[f"map50_95_{suffix}"] = max(float(evaluation.stats[0]), 0.0)
            metrics[f"map50_{suffix}"] = max(float(evaluation.stats[1]), 0.0)
        else:
            metrics[f"map50_95_{suffix}"] = metrics[f"map50_{suffix}"] = 0.0
        precision, recall = _precision_recall(annotations, detections, iou_type)
        metrics[f"precision_{suffix}"], metrics[f"recall_{suffix}"] = precision, recall
    return metrics


def _precision_recall(annotations: list[dict], detections: list[dict], iou_type: str) -> tuple[float, float]:
    """Greedy matching, best score first, of detections scoring >= 0.5 to truth of their class at IoU >= 0.5."""
    key = "segmentation" if iou_type == "segm" else "bbox"
    kept = sorted((d for d in detections if d["score"] >= SCORE_THRESHOLD), key=lambda d: -d["score"])
    matched: set[int] = set()
    true_positives = 0
    for det in kept:
        candidates = [a for a in annotations if a["image_id"] == det["image_id"]
                      and a["category_id"] == det["category_id"] and a["id"] not in matched]
        if not candidates:
            continue
        ious = mask_utils.iou([det[key]], [a[key] for a in candidates], [0] * len(candidates))
        best = int(np.argmax(ious[0]))
        if ious[0][best] >= IOU_THRESHOLD:
            matched.add(candidates[best]["id"])
            true_positives += 1
    precision = true_positives / len(kept) if kept else 0.0
    recall = true_positives / len(annotations) if annotations else 0.0
    return precision, recall


@dataclass
class _Card:
    image: np.ndarray
    quads: dict[int, np.ndarray]  # class id -> labelled quad, OpenCV convention
    reference: Measurement  # measured from the labelled quads
    reduced: Reduced  # the classical detector's working copy
    classical_outer: np.ndarray | str  # the classical detector's card, which a model's is checked against


class BorderEvaluator:
    """The border error in mm of a model's outlines on validation cards, through the measurement engine. The
    cards and their reference measurements are loaded once and kept for every epoch."""

    def __init__(self, samples: Sequence[Sample], limit: int) -> None:
        self.cards: list[_Card] = []
        self.skipped: list[str] = []
        for sample in samples:
            if len(self.cards) >= limit:
                break
            card = _card(sample)
            if isinstance(card, str):
                self.skipped.append(f"{sample.path.name}: {card}")
            else:
                self.cards.append(card)

    def evaluate(self, backend: Backend, model: torch.nn.Module, spec: ModelSpec, device: str) -> dict[str, float]:
        if not self.cards:
            return {}
        predictor = TorchPredictor(backend, model, spec, device)
        errors, corner_px, refused = [], [], 0
        for card in self.cards:
            found = predictor.predict(card.image)
            band = band_px(predictor, card.image)
            for class_id in spec.classes:
                coarse = model_quad(found, class_id, card.image.shape)
                if coarse is not None:  # the model's own outline, before snapping: how good the network is
                    corner_px.append(float(np.linalg.norm(align_quad(coarse, card.quads[class_id]) -
                                                          card.quads[class_id], axis=1).mean()))
            # measured as `cardmetry measure --*-model` would (snapped, checked against the classical detector),
            # the other role from its labels
            outer = card.quads[OUTER]
            if OUTER in spec.classes:
                outer = role_quad(found, OUTER, card.image, STANDARD, band, card.classical_outer)
            graphic = card.quads[GRAPHIC]
            if GRAPHIC in spec.classes and not isinstance(outer, str):
                classical = detect_graphic(card.image, outer, STANDARD, reduced=card.reduced)
                graphic = role_quad(found, GRAPHIC, card.image, STANDARD, band, classical, outer)
            result = None
            if not isinstance(outer, str) and not isinstance(graphic, str):
                result = measure_borders(card.image, outer, graphic, STANDARD)
            if isinstance(result, Measurement):
                errors += [abs(p.border_mm - r.border_mm) for p, r in
                           zip(result.points, card.reference.points, strict=True)]
            else:
                refused += 1
        out = {"border_refused": refused / len(self.cards), "border_cards": float(len(self.cards))}
        if errors:
            out["border_error_mm"] = float(np.median(errors))
            out["border_error_p95_mm"] = float(np.percentile(errors, 95))
        if corner_px:
            out["corner_error_px"] = float(np.median(corner_px))
        return out


def _quad_or_none(polygon_label: np.ndarray) -> np.ndarray | None:
    try:
        return quad_from_polygon(label_to_cv(polygon_label))
    except (ValueError, np.linalg.LinAlgError):
        return None


def _card(sample: Sample) -> _Card | str:
    outlines: dict[int, list[Instance]] = {}
    for inst in sample.reference:
        outlines.setdefault(inst.class_id, []).append(inst)
    if len(outlines.get(0, [])) != 1 or len(outlines.get(1, [])) != 1:
        return "needs exactly one outer and one graphic outline"
    quads = {c: _quad_or_none(outlines[c][0].polygon) for c in (0, 1)}
    if any(q is None for q in quads.values()):
        return "an outline is not a quad"
    try:
        image = load_image(sample.path)
    except ImageError as error:
        return str(error)
    reference = measure_borders(image, quads[0], quads[1], STANDARD)
    if not isinstance(reference, Measurement):
        return f"not measurable from its labels: {reference.reason}"
    reduced = Reduced.of(image)
    return _Card(image, quads, reference, reduced, detect_outer(image, STANDARD, reduced=reduced))  # type: ignore[arg-type]
