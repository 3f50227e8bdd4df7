"""Lines, quads and homographies."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cardmetry.geometry.homography import apply_homography, homography_from_points, transform_line
from cardmetry.geometry.lines import (
    fit_line,
    intersect,
    line_angle_deg,
    line_through,
    order_quad,
    polygon_area,
    quad_edges,
    quad_from_lines,
    quad_from_polygon,
    signed_distance,
    upright_quad,
)

finite = st.floats(-1e3, 1e3, allow_nan=False)


@given(st.tuples(finite, finite), st.tuples(finite, finite))
def test_line_through_passes_through_both_points(p: tuple[float, float], q: tuple[float, float]) -> None:
    assume(np.hypot(p[0] - q[0], p[1] - q[1]) > 1e-3)
    line = line_through(np.array(p), np.array(q))
    assert np.hypot(line[0], line[1]) == pytest.approx(1)
    assert abs(signed_distance(line, np.array(p))) < 1e-6 * (1 + np.abs(p).max())
    assert abs(signed_distance(line, np.array(q))) < 1e-6 * (1 + np.abs(q).max())


@pytest.mark.parametrize(
    ("p", "q", "angle"),
    [
        ((0, 0), (1, 0), 0.0),  # horizontal
        ((0, 0), (0, 1), 90.0),  # vertical, pointing down the image
        ((0, 0), (1, 1), 45.0),  # down-right is clockwise on screen: positive
        ((0, 0), (1, -1), -45.0),  # up-right: negative
    ],
)
def test_line_angle(p: tuple[float, float], q: tuple[float, float], angle: float) -> None:
    assert line_angle_deg(line_through(np.array(p, float), np.array(q, float))) == pytest.approx(angle)


def test_a_line_needs_two_distinct_points() -> None:
    with pytest.raises(ValueError, match="two distinct points"):
        line_through((1.0, 2.0), (1.0, 2.0))


def test_parallel_lines_do_not_intersect() -> None:
    with pytest.raises(ValueError, match="parallel"):
        intersect(line_through((0, 0), (1, 0)), line_through((0, 1), (1, 1)))


def test_quad_round_trip_through_edges() -> None:
    quad = np.array([[10.0, 12.0], [110.0, 9.0], [113.0, 160.0], [8.0, 158.0]])
    edges = quad_edges(quad)
    assert np.allclose(quad_from_lines(edges["top"], edges["right"], edges["bottom"], edges["left"]), quad)
    assert np.allclose(order_quad(quad[[2, 0, 3, 1]]), quad)
    assert polygon_area(np.array([[0, 0], [4, 0], [4, 3], [0, 3]])) == pytest.approx(12)


def test_fit_line_recovers_a_noisy_line() -> None:
    rng = np.random.default_rng(0)
    t = np.linspace(0, 100, 200)
    pts = np.stack([t, 0.3 * t + 5 + rng.normal(0, 0.01, t.size)], axis=1)
    line = fit_line(pts)
    assert np.abs(signed_distance(line, pts)).max() < 0.05


def test_quad_from_rounded_polygon_ignores_the_corners() -> None:
    # A rounded rectangle outline: the quad is the squared-off corners, not the arcs.
    from cardmetry.data.synth.shapes import RoundedRect

    rect = RoundedRect((50, 70), (30, 45), 6.0, 2.0)
    quad = quad_from_polygon(rect.outline(12))
    assert np.abs(quad - rect.corners()).max() < 1e-6


@pytest.mark.parametrize(
    ("turns", "expected_first"),
    [
        (0, 0),  # already upright
        (1, 0),  # any starting corner gives the same labelling
        (2, 0),
        (3, 0),
    ],
)
def test_upright_quad_relabels_a_portrait_card(turns: int, expected_first: int) -> None:
    quad = np.array([[0.0, 0.0], [63.5, 0.0], [63.5, 88.9], [0.0, 88.9]])
    relabelled = upright_quad(np.roll(quad, turns, axis=0))
    assert np.allclose(relabelled, np.roll(quad, -expected_first, axis=0))


def test_upright_quad_turns_a_landscape_card_by_the_smallest_rotation() -> None:
    # A card lying sideways, tilted 3 degrees clockwise from landscape: its upright top is the image's right side.
    c, s = np.cos(np.radians(93)), np.sin(np.radians(93))
    card = np.array([[0.0, 0.0], [63.5, 0.0], [63.5, 88.9], [0.0, 88.9]]) - (31.75, 44.45)
    turned = card @ np.array([[c, -s], [s, c]]).T
    relabelled = upright_quad(order_quad(turned))
    assert np.allclose(relabelled, np.roll(turned, 2, axis=0))  # turned by 180: the smaller of 93 and 87 deg


@settings(max_examples=50)
@given(st.lists(st.floats(-0.2, 0.2), min_size=8, max_size=8))
def test_homography_maps_points_and_lines_consistently(jitter: list[float]) -> None:
    src = np.array([[0.0, 0.0], [63.5, 0.0], [63.5, 88.9], [0.0, 88.9]])
    dst = src * 20 + np.array(jitter).reshape(4, 2) * 300 + 50
    h = homography_from_points(src, dst)
    assert np.allclose(apply_homography(h, src), dst, atol=1e-6)
    line = line_through(src[0], src[2])
    mapped = transform_line(h, line)
    assert np.abs(signed_distance(mapped, apply_homography(h, src[[0, 2]]))).max() < 1e-6
