"""The whole classical path, image to Measurement, against the renderer's exact truth."""

from __future__ import annotations

import numpy as np
import pytest

from cardmetry.data.synth import render, sample_scene
from cardmetry.geometry.specs import STANDARD
from cardmetry.measure.grades import load_tables
from cardmetry.measure.pipeline import measure_image
from cardmetry.measure.result import Measurement, Refusal


@pytest.mark.parametrize(
    ("seed", "options"),
    [
        (503, {"dpi": 300, "landscape": True}),  # lying sideways: measured as the same portrait card
        (11, {"dpi": 300}),  # upright, in a sleeve on the scanner lid
    ],
)
def test_widths_and_centering_match_the_truth(seed: int, options: dict) -> None:
    rendered = render(sample_scene(seed, **options))
    result = measure_image(rendered.image, STANDARD, name="card.png", grade_tables=load_tables())
    assert isinstance(result, Measurement), getattr(result, "reason", "")
    truth = {w.station.id: w.border_mm for w in rendered.truth.widths}
    errors = np.array([p.border_mm - truth[p.id] for p in result.points])
    assert np.abs(errors).max() < 0.03
    for axis in ("left_right", "top_bottom"):
        assert result.centering[axis][0] == pytest.approx(rendered.truth.centering[axis][0], abs=0.3)
    assert np.abs(result.outer_quad_px - rendered.truth.outer_quad_px).max() < 1.0  # same corners, same labels
    assert result.grades["psa"]["ceiling"] is not None and result.grades["sgc"]["ceiling"] is None


@pytest.mark.parametrize(
    ("height", "width"),
    [
        (1, 1),  # a single pixel: the background model once failed inside numpy (LinAlgError)
        (4, 6),  # a few pixels
        (1, 200),  # a single row
        (31, 600),  # one pixel short of the least that is measured
    ],
)
def test_an_image_too_small_to_hold_a_card_is_refused_saying_so(height: int, width: int) -> None:
    result = measure_image(np.zeros((height, width, 3), np.uint8), STANDARD, name="tiny.png")
    assert isinstance(result, Refusal)
    assert result.reason == f"the image is {width} x {height} px: too small to measure a card (at least 32 px a side)"
