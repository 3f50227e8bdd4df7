"""The classical backend: the no-model detector behind the predictor interface, checked against rendered truth."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cardmetry.data.instances import GRAPHIC, OUTER, cv_to_label
from cardmetry.data.synth import render, sample_scene
from cardmetry.models.backends.classical import ClassicalBackend
from cardmetry.models.base import ModelSpec
from cardmetry.models.registry import get_backend


def _spec(classes: tuple[int, ...]) -> ModelSpec:
    return ModelSpec("classical", "default", classes, imgsz=0, pretrained=False)


@pytest.fixture(scope="module")
def card():
    scene = sample_scene(3, dpi=200)
    return scene, render(scene)


@pytest.mark.parametrize(
    ("classes", "expected"),
    [
        ((OUTER,), [OUTER]),  # an outer-border model's classes
        ((GRAPHIC,), [GRAPHIC]),  # a graphic-only model still finds the outer border first, but returns only its own
        ((OUTER, GRAPHIC), [OUTER, GRAPHIC]),  # both, in the spec's order
        ((GRAPHIC, OUTER), [GRAPHIC, OUTER]),  # the spec's order, not the detector's
    ],
)
def test_quads_match_the_truth(card, classes, expected):
    scene, rendered = card
    predictor = get_backend("classical").predictor(_spec(classes), scene.spec)
    found = predictor.predict(rendered.image)
    assert [inst.class_id for inst in found] == expected
    truth = {OUTER: rendered.truth.outer_quad_px, GRAPHIC: rendered.truth.graphic_quad_px}
    for inst in found:
        assert inst.score == 1.0
        assert np.abs(inst.polygon - cv_to_label(truth[inst.class_id])).max() < 2.0
        # The mask is the filled quad at the image's size: its area is the quad's to within its outline's pixels.
        assert inst.mask.shape == rendered.image.shape[:2] and inst.mask.dtype == np.float32
        area = cv2.contourArea(truth[inst.class_id].astype(np.float32))
        perimeter = cv2.arcLength(truth[inst.class_id].astype(np.float32), closed=True)
        assert abs(float(inst.mask.sum()) - area) < perimeter
        x0, y0, x1, y1 = inst.box
        assert (x0, y0) == tuple(inst.polygon.min(axis=0)) and (x1, y1) == tuple(inst.polygon.max(axis=0))
    assert predictor.last_reason is None


@pytest.mark.parametrize(
    "image",
    [
        np.full((300, 220, 3), 128, np.uint8),  # a blank image: no card to find
        np.zeros((300, 220, 3), np.uint8),  # an all-black image
    ],
)
def test_no_card_gives_no_instance_and_a_reason(image):
    predictor = ClassicalBackend().predictor(_spec((OUTER, GRAPHIC)))
    assert predictor.predict(image) == []
    assert predictor.last_reason and predictor.last_reason.startswith("outer border:")


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        (ModelSpec("classical", "big", (OUTER,), 0), ValueError),  # an unknown variant
        (ModelSpec("classical", "default", (5,), 0), ValueError),  # a class the detector cannot find
    ],
)
def test_bad_specs_are_refused(spec, error):
    with pytest.raises(error):
        ClassicalBackend().predictor(spec)


def test_it_is_listed_as_a_baseline_that_cannot_train():
    backend = ClassicalBackend()
    assert not backend.trainable and backend.unavailable_reason() is None
    with pytest.raises(NotImplementedError, match="predictor"):
        backend.build(_spec((OUTER,)))
