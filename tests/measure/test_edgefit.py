"""Edge fits on renders of known truth: position to a few hundredths of a pixel, and an uncertainty that covers it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cardmetry.data.synth import render, sample_scene
from cardmetry.geometry.lines import QUAD_SIDES, quad_edges, signed_distance
from cardmetry.measure.edgefit import EdgeFit, fit_edge


def fit_quad_edges(image: np.ndarray, quad: np.ndarray, px_per_mm: float, offset_px: float) -> dict[str, EdgeFit | str]:
    """Fit each edge of a true quad from a coarse line `offset_px` away, 5 mm clear of the corners."""
    out = {}
    for name, line in quad_edges(quad).items():
        p0, p1 = quad[QUAD_SIDES[name][0]], quad[QUAD_SIDES[name][1]]
        step = (p1 - p0) / np.linalg.norm(p1 - p0) * 5 * px_per_mm
        out[name] = fit_edge(image, line + np.array([0, 0, offset_px]), p0 + step, p1 - step)
    return out


@pytest.mark.parametrize("seed", [0, 3, 5])
def test_outer_edges_of_600_dpi_scans(seed: int) -> None:
    # Whole scans as rendered: rotation, blur, noise, JPEG 90, sleeves, backgrounds, and a coarse line 1.7 px off.
    scene = sample_scene(seed, dpi=600)
    rendered = render(scene)
    quad = rendered.truth.outer_quad_px
    for name, fit in fit_quad_edges(rendered.image, quad, rendered.truth.px_per_mm, 1.7).items():
        assert isinstance(fit, EdgeFit), f"{name}: {fit}"
        middle = quad[list(QUAD_SIDES[name])].mean(axis=0)
        error = abs(float(signed_distance(fit.line, middle[None])[0]))
        assert error < 0.05, f"{name}: {error:.3f} px"
        assert error < 4 * fit.sigma_px(middle) + 0.01, (
            f"{name}: {error:.3f} px against sigma {fit.sigma_px(middle):.4f}"
        )


def test_colour_edges_are_found_in_the_colour_that_carries_them() -> None:
    # A yellow border against blue art: nearly equal in grey, far apart in colour.
    scene = sample_scene(4, dpi=300)
    look = dataclasses.replace(
        scene.look,
        border_style="yellow",
        border_colour=(225, 200, 40),
        rule_width_mm=0.0,
        crossings=(),
        low_contrast_edge="none",
    )
    rendered = render(dataclasses.replace(scene, look=look))
    fits = fit_quad_edges(rendered.image, rendered.truth.graphic_quad_px, rendered.truth.px_per_mm, -1.2)
    assert all(isinstance(f, EdgeFit) for f in fits.values()), fits


@pytest.mark.parametrize("rule_mm", [0.0, 0.17, 0.4])
def test_a_printed_rule_inside_the_frame_is_found_and_fitted_as_a_bar(rule_mm: float) -> None:
    # At 300 dpi a 0.17 mm rule is two pixels: a bar whose far side lies in any window that holds the frame's edge,
    # and a step fitted through it lands some 0.4 px off. A 0.4 mm rule is five pixels, its far side out of reach.
    scene = sample_scene(6, dpi=300)
    look = dataclasses.replace(scene.look, rule_width_mm=rule_mm, crossings=(), low_contrast_edge="none")
    rendered = render(dataclasses.replace(scene, look=look))
    quad, px_per_mm = rendered.truth.graphic_quad_px, rendered.truth.px_per_mm
    for name, line in quad_edges(quad).items():
        p0, p1 = quad[QUAD_SIDES[name][0]], quad[QUAD_SIDES[name][1]]
        step = (p1 - p0) / np.linalg.norm(p1 - p0) * 2 * px_per_mm
        fit = fit_edge(
            rendered.image,
            line + np.array([0, 0, 1.2]),
            p0 + step,
            p1 - step,
            inside=quad.mean(axis=0),
            max_rule_px=0.6 * px_per_mm,
        )
        assert isinstance(fit, EdgeFit), f"{name}: {fit}"
        assert fit.rule_px == pytest.approx(rule_mm * px_per_mm, abs=0.3), name
        middle = quad[list(QUAD_SIDES[name])].mean(axis=0)
        error = abs(float(signed_distance(fit.line, middle[None])[0]))
        assert error < 0.08, f"{name}: {error:.3f} px"


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("flat", "a step was found in only"),  # no edge at all near the coarse line
        ("outside", "too short or runs outside the image"),  # the coarse line lies off the image
    ],
)
def test_refusals_say_why(case: str, reason: str) -> None:
    image = np.full((400, 300, 3), 128, np.uint8)
    line = np.array([1.0, 0.0, -150.0])  # x = 150
    p0, p1 = (
        (np.array([150.0, 20.0]), np.array([150.0, 380.0]))
        if case == "flat"
        else (np.array([500.0, 20.0]), np.array([500.0, 380.0]))
    )
    if case == "outside":
        line = np.array([1.0, 0.0, -500.0])
    result = fit_edge(image, line, p0, p1)
    assert isinstance(result, str) and reason in result
