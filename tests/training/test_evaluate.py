"""COCO metrics through pycocotools: perfect, missing, shifted and wrong-class predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cardmetry.models.base import ModelSpec, PredictedInstance, Target
from cardmetry.models.outlines import box_of, largest_outline
from cardmetry.training.evaluate import coco_metrics

SIZE = 64
SPEC = ModelSpec("toy", "tiny", (0, 1), SIZE)


def square(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def target(*masks: np.ndarray, labels: tuple[int, ...] = (0, 1)) -> Target:
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return Target(torch.tensor(labels[: len(masks)]), torch.tensor(boxes, dtype=torch.float32),
                  torch.from_numpy(np.stack(masks)))


def found(mask: np.ndarray, class_id: int, score: float = 0.9) -> PredictedInstance:
    polygon = largest_outline(mask.astype(bool))
    return PredictedInstance(class_id, score, mask.astype(np.float32), polygon, box_of(polygon))


OUTER, FRAME = square(4, 4, 60, 60), square(20, 16, 44, 48)  # IoU 0.24: no match across classes


@pytest.mark.parametrize(
    ("predictions", "expect"),
    [
        ([found(OUTER, 0), found(FRAME, 1)], {"map50_mask": 1.0, "precision_mask": 1.0, "recall_mask": 1.0}),  # exact
        ([], {"map50_mask": 0.0, "precision_mask": 0.0, "recall_mask": 0.0}),  # nothing found
        ([found(OUTER, 0)], {"precision_mask": 1.0, "recall_mask": 0.5}),  # one of two found
        ([found(OUTER, 1), found(FRAME, 0)], {"precision_mask": 0.0, "recall_mask": 0.0}),  # classes swapped
        ([found(OUTER, 0, score=0.3), found(FRAME, 1, 0.3)], {"precision_mask": 0.0, "map50_mask": 1.0}),  # low score
    ],
)
def test_coco_metrics(predictions, expect) -> None:
    metrics = coco_metrics([target(OUTER, FRAME)], [predictions], SPEC)
    for key, value in expect.items():
        assert metrics[key] == pytest.approx(value, abs=1e-6), key


def test_a_shifted_mask_scores_below_an_exact_one() -> None:
    shifted = square(10, 10, 63, 63)
    exact = coco_metrics([target(OUTER, FRAME)], [[found(OUTER, 0), found(FRAME, 1)]], SPEC)
    off = coco_metrics([target(OUTER, FRAME)], [[found(shifted, 0), found(FRAME, 1)]], SPEC)
    assert off["map50_95_mask"] < exact["map50_95_mask"] == pytest.approx(1.0)
    assert off["map50_mask"] == pytest.approx(1.0)  # still above IoU 0.5
