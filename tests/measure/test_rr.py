"""Gauge repeatability: perturbations that act like a rescan, and the per-station spread of repeated results."""

from __future__ import annotations

import numpy as np
import pytest

from cardmetry.data.synth import render, sample_scene
from cardmetry.geometry.specs import STANDARD
from cardmetry.measure.engine import measure_borders
from cardmetry.measure.result import Measurement, PointResult, Refusal
from cardmetry.measure.rr import Perturbation, perturb, repeatability, sample_perturbations


def test_perturbations_are_seeded_and_within_their_bounds() -> None:
    first, again, other = sample_perturbations(20, 3), sample_perturbations(20, 3), sample_perturbations(20, 4)
    assert [p.as_json() for p in first] == [p.as_json() for p in again]
    assert [p.as_json() for p in first] != [p.as_json() for p in other]
    assert all(abs(p.rotation_deg) <= 2 and abs(p.scale - 1) <= 0.03 and 85 <= p.jpeg_quality <= 95 for p in first)
    assert all(np.abs(p.corner_shift_px).max() <= 2 for p in first)


def test_an_identity_perturbation_changes_only_by_jpeg() -> None:
    image = render(sample_scene(3, dpi=100)).image
    same = perturb(image, Perturbation(0.0, 1.0, np.zeros((4, 2)), 100))
    assert same.shape == image.shape and same.dtype == np.uint8
    assert np.abs(same.astype(int) - image).mean() < 1.5


def test_a_rotation_moves_the_card_by_the_expected_amount() -> None:
    rendered = render(sample_scene(3, dpi=100))
    turned = perturb(rendered.image, Perturbation(1.0, 1.0, np.zeros((4, 2)), 95))
    height, width = rendered.image.shape[:2]
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    angle = np.radians(1.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    expected = (rendered.truth.outer_quad_px - centre) @ rotation.T + centre
    # The truth quad carried through the same rotation still measures the card: its borders agree with the
    # unperturbed card's to a few micrometres, which a wrong sense of rotation (2 degrees apart) would break.
    original = measure_borders(rendered.image, rendered.truth.outer_quad_px, rendered.truth.graphic_quad_px, STANDARD)
    graphic = (rendered.truth.graphic_quad_px - centre) @ rotation.T + centre
    moved = measure_borders(turned, expected, graphic, STANDARD)
    assert isinstance(original, Measurement) and isinstance(moved, Measurement), getattr(moved, "reason", "")
    assert np.abs(moved.outer_quad_px - expected).max() < 0.5
    shifts = [a.border_mm - b.border_mm for a, b in zip(moved.points, original.points, strict=True)]
    assert np.abs(shifts).max() < 0.05


def fake(widths: list[float], left: float = 50.0) -> Measurement:
    points = [
        PointResult(s.id, s.edge, s.position_mm, w, 0.001) for s, w in zip(STANDARD.stations(), widths, strict=True)
    ]
    return Measurement(
        "card.png", "front", STANDARD, np.zeros((4, 2)), np.zeros((4, 2)), 20.0, points,
        {"left_right": [left, 100 - left], "top_bottom": [50.0, 50.0]}, {"frame": 0.0}, [], 0.1, 0.1,
    )  # fmt: skip


def test_spread_is_the_sample_std_and_range_per_station() -> None:
    base = np.linspace(2.0, 3.0, 24)
    results = [fake(list(base)), fake(list(base + 0.02), 51.0), fake(list(base + 0.04), 52.0)]
    spread = repeatability([*results, Refusal("card.png", "front", "outer left edge: weak")])
    assert spread.measured == 3 and spread.refused == ["outer left edge: weak"]
    assert spread.stations[0].std_mm == pytest.approx(0.02)
    assert spread.stations[5].range_mm == pytest.approx(0.04)
    assert spread.stations[5].mean_mm == pytest.approx(base[5] + 0.02)
    assert spread.median_std_mm == pytest.approx(0.02) and spread.left_share_std == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("results", "message"),
    [
        ([], "0 measured and 0 refused"),  # nothing at all
        ([Refusal("a", "front", "no card found")] * 3, "first reason: no card found"),  # every repeat refused
    ],
)
def test_fewer_than_two_measurements_is_an_error(results: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        repeatability(results)
