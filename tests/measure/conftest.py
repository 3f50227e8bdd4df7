"""Shared fixtures of the measure tests."""

from __future__ import annotations

import pytest

from cardmetry.data.synth import Rendered, render, sample_scene
from cardmetry.measure.engine import measure_borders
from cardmetry.measure.result import Measurement


@pytest.fixture(scope="session")
def measured_card() -> tuple[Rendered, Measurement]:
    """A 200 dpi render measured from its true quads: quick, and every output can be checked against the truth."""
    scene = sample_scene(3, dpi=200)
    rendered = render(scene)
    result = measure_borders(
        rendered.image, rendered.truth.outer_quad_px, rendered.truth.graphic_quad_px, scene.spec, image_name="c.png"
    )
    assert isinstance(result, Measurement), getattr(result, "reason", "")
    return rendered, result
