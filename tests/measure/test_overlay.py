"""The overlay: its lines sit on the true edges to a fraction of a pixel, its ticks at the stations, and it leaves
the rest of the image and its input alone; a refusal draws nothing that looks like a measurement."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from cardmetry.geometry.homography import apply_homography, image_to_card
from cardmetry.geometry.specs import CardSpec
from cardmetry.measure.overlay import (
    GRAPHIC_COLOUR,
    OUTER_COLOUR,
    REFUSED_BAND_COLOUR,
    TICK_COLOUR,
    WORST_COLOUR,
    Style,
    draw_overlay,
    station_marks,
)
from cardmetry.measure.result import Refusal


@pytest.fixture(scope="module")
def card(measured_card):
    return measured_card


def alpha(overlay_px: np.ndarray, original_px: np.ndarray, colour: tuple[int, int, int]) -> float:
    """How far a pixel moved from the original towards the drawing colour: 0 untouched, 1 fully painted."""
    towards = np.asarray(colour, float) - original_px.astype(float)
    return float(np.dot(overlay_px.astype(float) - original_px, towards) / np.dot(towards, towards))


def between_stations(frame_quad: np.ndarray, quad: np.ndarray, spec: CardSpec) -> list[tuple[np.ndarray, np.ndarray]]:
    """Points on each edge of `quad` half way between stations (away from ticks and labels), in image px, with the
    edge's unit direction there. Positions are taken in the card frame that `frame_quad` defines, as stations are."""
    to_card = image_to_card(frame_quad, spec)
    to_image = np.linalg.inv(to_card)
    quad_mm = apply_homography(to_card, quad)
    along_u = [(a + b) / 2 for a, b in itertools.pairwise(spec.end_positions_mm)]
    along_v = [(a + b) / 2 for a, b in itertools.pairwise(spec.side_positions_mm)]
    mids = {(0, 1): along_u, (3, 2): along_u, (0, 3): along_v, (1, 2): along_v}  # top, bottom, left, right
    out = []
    for (i, j), positions in mids.items():
        axis = 0 if (i, j) in ((0, 1), (3, 2)) else 1
        a, b = quad_mm[i], quad_mm[j]
        for pos in positions:
            t = (pos - a[axis]) / (b[axis] - a[axis])
            p_img = apply_homography(to_image, a + t * (b - a))
            direction = quad[j] - quad[i]
            out.append((p_img, direction / np.linalg.norm(direction)))
    return out


def crossing(quad: np.ndarray, i: int, j: int, x: int, y: int, vertical: bool) -> float:
    """Where the side quad[i]-quad[j] crosses row y (a near-vertical side) or column x (a near-horizontal one)."""
    (x0, y0), (x1, y1) = quad[i], quad[j]
    if vertical:
        return x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return y0 + (x - x0) * (y1 - y0) / (x1 - x0)


@pytest.mark.parametrize("which", ["outer", "graphic"])
def test_lines_sit_on_the_edges(card, which: str) -> None:
    rendered, result = card
    measured = getattr(result, f"{which}_quad_px")
    true = getattr(rendered.truth, f"{which}_quad_px")
    colour = OUTER_COLOUR if which == "outer" else GRAPHIC_COLOUR
    overlay = draw_overlay(rendered.image, result)
    drawn = overlay[overlay.shape[0] - rendered.image.shape[0] :]  # the band is stacked above the image
    points = between_stations(result.outer_quad_px, measured, result.spec)
    sides = [(0, 1)] * 4 + [(3, 2)] * 4 + [(0, 3)] * 6 + [(1, 2)] * 6
    assert len(points) == len(sides)
    offsets = np.arange(-3, 4)
    for (point, direction), (i, j) in zip(points, sides, strict=True):
        x, y = np.round(point).astype(int)
        assert alpha(drawn[y, x], rendered.image[y, x], colour) > 0.4, (which, point)
        # Across the edge (along a row for a near-vertical side, a column for a near-horizontal one) the centroid of
        # the paint is where the fitted line crosses, to a fraction of a pixel (the drawing is sub-pixel), and the
        # renderer's true edge is within half a pixel of it (the fit is good; at 200 dpi the graphic edge is ~0.25 px
        # off, which the engine flags as too low a resolution).
        vertical = abs(direction[1]) > abs(direction[0])
        if vertical:
            weights = [max(0.0, alpha(drawn[y, x + k], rendered.image[y, x + k], colour)) for k in offsets]
            centroid = x + np.dot(weights, offsets) / np.sum(weights)
        else:
            weights = [max(0.0, alpha(drawn[y + k, x], rendered.image[y + k, x], colour)) for k in offsets]
            centroid = y + np.dot(weights, offsets) / np.sum(weights)
        assert abs(centroid - crossing(measured, i, j, x, y, vertical)) < 0.1, (which, point)
        assert abs(centroid - crossing(true, i, j, x, y, vertical)) < 0.5, (which, point)
        # Ten pixels either side the image is as it was: the lines are thin and nothing else is drawn there.
        normal = np.array([-direction[1], direction[0]])
        for side in (-1, 1):
            qx, qy = np.round(point + side * 10 * normal).astype(int)
            assert np.array_equal(drawn[qy, qx], rendered.image[qy, qx]), (which, point, side)


def test_ticks_run_from_the_outer_edge_to_the_graphic_edge_at_each_station(card) -> None:
    rendered, result = card
    marks = station_marks(result)
    assert [m.id for m in marks] == [p.id for p in result.points]
    worst_lr = result.centering["worst_left_right"]["station"]
    worst_tb = result.centering["worst_top_bottom"]["station"]
    assert {m.id for m in marks if m.worst} == {f"L{worst_lr}", f"R{worst_lr}", f"T{worst_tb}", f"B{worst_tb}"}
    overlay = draw_overlay(rendered.image, result)
    drawn = overlay[overlay.shape[0] - rendered.image.shape[0] :]
    for mark in marks:
        # The tick's length is the border width at this resolution.
        assert np.linalg.norm(mark.graphic_px - mark.outer_px) / result.px_per_mm == pytest.approx(
            mark.border_mm, rel=0.03
        )
        x, y = np.round((mark.graphic_px + mark.outer_px) / 2).astype(int)
        colour = WORST_COLOUR if mark.worst else TICK_COLOUR
        assert alpha(drawn[y, x], rendered.image[y, x], colour) > 0.4, mark.id


def test_the_input_is_not_modified(card) -> None:
    rendered, result = card
    before = rendered.image.copy()
    overlay = draw_overlay(rendered.image, result)
    assert np.array_equal(rendered.image, before)
    assert overlay.dtype == np.uint8 and overlay.shape[1:] == rendered.image.shape[1:]
    assert not np.shares_memory(overlay, rendered.image)


def test_text_scales_with_the_image() -> None:
    photo, scan = Style.for_image((1200, 900, 3)), Style.for_image((2100, 1500, 3))
    assert scan.text_height > photo.text_height >= 10
    assert scan.text_height / photo.text_height == pytest.approx(2100 / 1200, rel=0.1)
    assert Style.for_image((300, 200, 3)).text_height >= 10  # never illegibly small


def test_a_refusal_shows_no_measurement(card) -> None:
    rendered, result = card
    refusal = Refusal("c.png", "front", "outer left edge: no step found", ["weak graphic top edge"])
    overlay = draw_overlay(rendered.image, refusal)
    band = overlay.shape[0] - rendered.image.shape[0]
    assert band > 0
    assert np.array_equal(overlay[0, -1], REFUSED_BAND_COLOUR)
    drawn = overlay[band:]
    # No borders, no ticks: the image is untouched along both true edges (the mark sits in the middle).
    for quad in (rendered.truth.outer_quad_px, rendered.truth.graphic_quad_px):
        for point, _ in between_stations(rendered.truth.outer_quad_px, quad, result.spec):
            x, y = np.round(point).astype(int)
            assert np.array_equal(drawn[y, x], rendered.image[y, x])


def test_grey_input_is_drawn_in_colour(card) -> None:
    rendered, result = card
    grey = cv2.cvtColor(rendered.image, cv2.COLOR_RGB2GRAY)
    overlay = draw_overlay(grey, result)
    assert overlay.ndim == 3 and overlay.shape[2] == 3
