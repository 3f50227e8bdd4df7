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


class TruthBackend:
    """Predicts each card's labelled outline (shifted by `shift` input pixels): a model as good or as bad as asked."""

    def __init__(self, polygons: list[np.ndarray], shift: float) -> None:
        self.polygons, self.shift = polygons, shift

    def predict_batch(self, model, images, spec, score_threshold=0.05):
        from cardmetry.training.augment import rasterise

        polygon = self.polygons.pop(0) + self.shift
        mask = rasterise(polygon, spec.imgsz).astype(np.float32)
        return [[PredictedInstance(0, 0.99, mask, polygon, box_of(polygon))]]


@pytest.mark.parametrize(
    ("shift", "good"),
    [
        (0.0, True),  # the labelled outline itself: the engine measures what the labels measure
        (0.5, True),  # half a network pixel inward (2 image pixels): the snap finds the edge again
        (-0.5, True),  # and outward, towards a sleeve's edge
        (12.0, False),  # far off: refused or plainly wrong, never quietly near
    ],
)
def test_the_border_error_measures_what_a_model_leaves(tmp_path, shift: float, good: bool) -> None:
    from cardmetry.data.formats import read_dataset
    from cardmetry.data.synth.dataset import SynthOptions, write_synth
    from cardmetry.models.letterbox import Letterbox
    from cardmetry.training.data import prepare_data
    from cardmetry.training.evaluate import BorderEvaluator
    from cardmetry.training.sources import DataSource, folder_version
    from tests.training.toy import tiny_config

    write_synth(tmp_path, SynthOptions(count=2, seed=77, dpi=300, supersample=1))
    dataset, _ = read_dataset(tmp_path)
    source = DataSource(dataset, tmp_path, folder_version(dataset, tmp_path))
    data = prepare_data(tiny_config(val_share=0.5), source)
    samples = data.val + data.train
    evaluator = BorderEvaluator(samples, limit=2)
    assert len(evaluator.cards) == 2 and not evaluator.skipped
    spec = ModelSpec("truth", "labels", (0,), 320)
    polygons = [Letterbox.for_image(s.width, s.height, 320).points_to_input(s.instances[0].polygon) for s in samples]
    metrics = evaluator.evaluate(TruthBackend(polygons, shift), torch.nn.Identity(), spec, "cpu")  # type: ignore[arg-type]
    if good:
        # The second card is dark in a sleeve: the classical detector takes the sleeve's edge, disagrees with the
        # model, and measure --outer-model refuses it, so the evaluator does too; the other card measures exactly.
        assert metrics["border_refused"] == 0.5 and metrics["border_error_p95_mm"] < 0.01
        assert metrics["corner_error_px"] < 2 + 4.5 * abs(shift)
    else:
        assert metrics["border_refused"] == 1 or metrics["border_error_mm"] > 0.1
