"""The renderer's truth, checked independently from its pixels.

An edge's position is recovered by integrating the image across it: for a step from level B to level A, the
sum of (I - B) / (A - B) over a window ending at x_end equals x_end + 0.5 - x_edge, whatever the anti-aliasing
filter, as long as it is symmetric. No fitting, no model: only the pixels and the written truth.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from cardmetry.data.instances import label_to_cv
from cardmetry.data.synth import render, sample_scene
from cardmetry.data.synth.dataset import SynthOptions, iter_synth, render_card_files
from cardmetry.data.synth.scene import MAX_BORDER_MM, MIN_BORDER_MM
from cardmetry.geometry.lines import QUAD_SIDES, fit_line, quad_edges, quad_from_lines, signed_distance
from cardmetry.geometry.specs import STANDARD, card_spec
from cardmetry.geometry.stations import side_means
from tests.data.synth_helpers import BACKGROUND, BORDER, RULE, clean_scene

WINDOW = 6  # pixels each side of the true edge that the integration covers


def integrate_edge(
    gray: np.ndarray,
    line: np.ndarray,
    inside: float,
    outside: float,
    *,
    vertical: bool,
    span: tuple[float, float],
    window: tuple[int, int] = (WINDOW, WINDOW),
) -> np.ndarray:
    """Edge points located by integration, one per row (vertical edge) or column (horizontal edge).

    `inside` and `outside` are the two flat levels; which side holds which is read from the profile itself.
    """
    points = []
    a, b, c = line
    for t in range(int(np.ceil(span[0])), int(np.floor(span[1])) + 1):
        cross = -(b * t + c) / a if vertical else -(a * t + c) / b
        lo, hi = int(np.floor(cross)) - window[0], int(np.floor(cross)) + window[1]
        profile = gray[t, lo : hi + 1] if vertical else gray[lo : hi + 1, t]
        share = (profile - outside) / (inside - outside)
        # Whichever side is inside, the covered length equals the distance from the inside end to the edge.
        located = lo - 0.5 + share.sum() if share[0] > share[-1] else hi + 0.5 - share.sum()
        points.append((located, t) if vertical else (t, located))
    return np.array(points)


def located_quad(
    gray: np.ndarray,
    quad: np.ndarray,
    inside: float,
    outside: float,
    trim: float = 0.15,
    window: tuple[int, int] = (WINDOW, WINDOW),
) -> tuple[np.ndarray, float]:
    """Fit each edge of `quad` to the integrated edge points along its middle; return the corners and the worst
    mean offset of the points from the true line (px)."""
    edges = quad_edges(quad)
    lines, worst = {}, 0.0
    for name, line in edges.items():
        vertical = name in ("left", "right")
        p, q = QUAD_SIDES[name]
        ends = sorted((quad[p][1 if vertical else 0], quad[q][1 if vertical else 0]))
        length = ends[1] - ends[0]
        points = integrate_edge(
            gray,
            line,
            inside,
            outside,
            vertical=vertical,
            span=(ends[0] + trim * length, ends[1] - trim * length),
            window=window,
        )
        offsets = signed_distance(line, points)
        # The mean offset shows a shift; the spread of single rows would show a tilt or a wobble along the edge.
        worst = max(worst, abs(float(np.mean(offsets))), float(np.std(offsets)) / 4)
        lines[name] = fit_line(points)
    return quad_from_lines(lines["top"], lines["right"], lines["bottom"], lines["left"]), worst


@pytest.mark.parametrize(
    ("rotation", "perspective", "supersample", "blur"),
    [
        (0.0, 0.0, 2, 0.0),  # axis-aligned: the hardest case for naive supersampling
        (0.37, 0.0, 2, 0.0),  # a small rotation: sub-pixel phase walks along the edge
        (4.6, 0.0, 2, 0.0),  # near the largest rotation a scan gets
        (2.2, 0.0, 1, 0.0),  # one sample per pixel: the coverage ramp alone
        (2.2, 0.0, 2, 0.9),  # scanner blur is symmetric, so it must not move edges
        (1.5, 0.04, 2, 0.0),  # a phone photo's perspective
    ],
)
def test_outer_edges_sit_where_the_truth_says(
    rotation: float, perspective: float, supersample: int, blur: float
) -> None:
    rendered = render(
        clean_scene(rotation_deg=rotation, perspective=perspective, supersample=supersample, blur_sigma_px=blur)
    )
    gray = rendered.image.astype(float).mean(axis=2)
    corners, worst_offset = located_quad(gray, rendered.truth.outer_quad_px, BORDER, BACKGROUND)
    assert worst_offset < 0.02
    assert np.abs(corners - rendered.truth.outer_quad_px).max() < 0.05


@pytest.mark.parametrize(
    ("rotation", "skew"),
    [
        (0.0, 0.0),  # frame square to the card
        (3.1, 0.8),  # rotated card with a skewed print
        (-2.0, -0.6),  # the other way round
    ],
)
def test_graphic_edges_sit_where_the_truth_says(rotation: float, skew: float) -> None:
    # The border-to-rule step: integrate from the border into the 0.5 mm rule (6 px at 300 dpi), no further.
    rendered = render(clean_scene(rotation_deg=rotation, skew_deg=skew))
    gray = rendered.image.astype(float).mean(axis=2)
    quad = rendered.truth.graphic_quad_px
    edges = quad_edges(quad)
    centre = quad.mean(axis=0)
    worst = 0.0
    for name, line in edges.items():
        vertical = name in ("left", "right")
        p, q = QUAD_SIDES[name]
        ends = sorted((quad[p][1 if vertical else 0], quad[q][1 if vertical else 0]))
        length = ends[1] - ends[0]
        # 5 px into the border, 3 px into the 5.9 px rule: the window never reaches the art.
        window = (5, 3) if _inside_is_greater(line, centre, vertical) else (3, 5)
        points = integrate_edge(
            gray,
            line,
            RULE,
            BORDER,
            vertical=vertical,
            span=(ends[0] + 0.2 * length, ends[1] - 0.2 * length),
            window=window,
        )
        worst = max(worst, abs(float(np.mean(signed_distance(line, points)))))
    assert worst < 0.02


def _inside_is_greater(line: np.ndarray, centre: np.ndarray, vertical: bool) -> bool:
    """Whether the frame's inside lies at larger x (vertical edges) or larger y (horizontal ones)."""
    a, b, c = line
    cross = -(b * centre[1] + c) / a if vertical else -(a * centre[0] + c) / b
    return (centre[0] if vertical else centre[1]) > cross


def test_polygons_agree_with_the_pixels() -> None:
    # Near each written outline (rounded corners included), pixels inside it are card (or rule), outside are not.
    rendered = render(clean_scene(rotation_deg=2.7, perspective=0.03))
    gray = rendered.image.astype(float).mean(axis=2)
    cases = (
        (rendered.truth.outer_polygon, gray > (BORDER + BACKGROUND) / 2),  # bright border inside, dark background out
        (rendered.truth.graphic_polygon, gray < (BORDER + RULE) / 2),  # dark rule inside, bright border outside
    )
    for polygon, inside_pixels in cases:
        outline = label_to_cv(polygon).astype(np.float32)
        ring = np.zeros(gray.shape, np.uint8)
        cv2.polylines(ring, [np.round(outline).astype(np.int32)], True, 1, thickness=9)  # 4 px either side
        rows, cols = np.nonzero(ring)
        centre_inside = np.array(
            [cv2.pointPolygonTest(outline, (float(x), float(y)), False) > 0 for y, x in zip(rows, cols, strict=True)]
        )
        agree = centre_inside == inside_pixels[rows, cols]
        # A pixel is more than half covered exactly when its centre is inside; only the rounded corners, drawn as
        # short chords in the polygon, may differ.
        assert agree.mean() > 0.998


def test_border_widths_follow_the_scene_without_skew() -> None:
    # With no print skew, each station's width is the border the scene asked for.
    scene = clean_scene(rotation_deg=1.3)
    truth = render(scene).truth
    for sw in truth.widths:
        assert sw.border_mm == pytest.approx(scene.borders_mm[sw.station.edge], abs=1e-9)


def test_skew_tilts_widths_linearly() -> None:
    # A frame turned by s degrees: widths along an edge change by tan(s) per mm, left and right in opposite senses.
    skew = 0.8
    truth = render(clean_scene(skew_deg=skew)).truth
    by_id = {sw.station.id: sw.border_mm for sw in truth.widths}
    pitch = STANDARD.side_positions_mm[1] - STANDARD.side_positions_mm[0]
    slope = np.tan(np.radians(skew)) * pitch
    assert by_id["L2"] - by_id["L1"] == pytest.approx(-slope, abs=1e-9)
    assert by_id["R2"] - by_id["R1"] == pytest.approx(slope, abs=1e-9)
    assert by_id["T2"] - by_id["T1"] == pytest.approx(slope, abs=1e-9)
    assert truth.skew_deg["frame"] == pytest.approx(skew, abs=1e-9)


def test_landscape_cards_are_described_upright() -> None:
    # A card lying sideways: the truth is the portrait card, turned upright by the smallest rotation.
    for seed in range(4):
        scene = sample_scene(seed, landscape=True, dpi=150)
        truth = render(scene).truth
        tl, tr, br, bl = truth.outer_quad_px
        assert np.linalg.norm(bl - tl) > np.linalg.norm(tr - tl)  # portrait in its own labelling
        up = (tl + tr) / 2 - (bl + br) / 2
        assert abs(np.degrees(np.arctan2(up[0], -up[1]))) < 90
        means = side_means(truth.widths)
        assert set(means) == {"left", "right", "top", "bottom"}


def test_same_seed_same_bytes(tmp_path) -> None:
    options = SynthOptions(count=2, seed=11, dpi=120)
    a, b = tmp_path / "a", tmp_path / "b"
    list(iter_synth(a, options))
    list(iter_synth(b, options, workers=2))
    for name in ("images/card_00000.jpg", "images/card_00001.jpg", "truth/card_00001.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    other = tmp_path / "c"
    list(iter_synth(other, SynthOptions(count=1, seed=12, dpi=120)))
    assert (other / "images/card_00000.jpg").read_bytes() != (a / "images/card_00000.jpg").read_bytes()


def test_sampled_scenes_keep_stations_on_the_straight_frame() -> None:
    # Hundreds of draws, both specs: borders stay in range and truth never raises.
    from cardmetry.data.synth.truth import compute_truth, place

    for seed in range(300):
        spec = "small" if seed % 3 == 0 else "standard"
        scene = sample_scene(seed, photo=seed % 2 == 1, spec=spec)
        assert all(MIN_BORDER_MM <= b <= MAX_BORDER_MM for b in scene.borders_mm.values())
        truth = compute_truth(scene, place(scene))
        assert len(truth.widths) == 24
        assert scene.spec == card_spec(spec)


def test_truth_file_holds_quads_points_and_scene(tmp_path) -> None:
    options = SynthOptions(count=1, seed=5, dpi=100, photo=True)
    for folder in ("images", "truth"):
        (tmp_path / folder).mkdir()
    labeled = render_card_files(tmp_path, 0, options)
    truth = json.loads((tmp_path / "truth" / "card_00000.json").read_text())
    assert truth["schema"] == "cardmetry.synth-truth/v1"
    assert len(truth["points"]) == 24 and len(truth["outer_quad_px"]) == 4
    assert truth["scene"]["capture"]["perspective"] > 0
    assert labeled.width > 0 and len(labeled.instances) == 2
