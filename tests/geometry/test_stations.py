"""Border widths, centering and skew from graphic edge lines, as CONTRACT.md defines them."""

from __future__ import annotations

import numpy as np
import pytest

from cardmetry.geometry.lines import line_through, signed_distance
from cardmetry.geometry.specs import STANDARD
from cardmetry.geometry.stations import border_widths, centering, frame_skew_deg, side_means, station_ends


def frame_lines(left: float, right: float, top: float, bottom: float) -> dict[str, np.ndarray]:
    w, h = STANDARD.size_mm
    return {
        "left": line_through((left, 0), (left, h)),
        "right": line_through((w - right, 0), (w - right, h)),
        "top": line_through((0, top), (w, top)),
        "bottom": line_through((0, h - bottom), (w, h - bottom)),
    }


def test_square_frame_widths_and_centering() -> None:
    widths = border_widths(frame_lines(2.0, 3.0, 4.0, 4.0), STANDARD)
    means = side_means(widths)
    assert means == pytest.approx({"left": 2.0, "right": 3.0, "top": 4.0, "bottom": 4.0})
    c = centering(widths)
    assert c["left_right"] == pytest.approx([40.0, 60.0])  # "left 40": the art sits to the left
    assert c["top_bottom"] == pytest.approx([50.0, 50.0])


def test_worst_station_is_the_most_off_centre_pair() -> None:
    # The left graphic edge leans: the pair at the bottom (station 7) is the most off-centre.
    h = STANDARD.height_mm
    lines = frame_lines(3.0, 3.0, 3.0, 3.0)
    lines["left"] = line_through((3.0, 0), (2.0, h))
    c = centering(border_widths(lines, STANDARD))
    assert c["worst_left_right"]["station"] == 7
    assert max(c["worst_left_right"]["ratio"]) > max(c["left_right"])


def test_skew_of_a_turned_frame() -> None:
    # Turn a frame 0.5 deg clockwise about the card centre: every edge and the frame report +0.5.
    w, h = STANDARD.size_mm
    theta = np.radians(0.5)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    corners = np.array([[3, 3], [w - 3, 3], [w - 3, h - 3], [3, h - 3]]) - (w / 2, h / 2)
    tl, tr, br, bl = corners @ rot.T + (w / 2, h / 2)
    lines = {
        "top": line_through(tl, tr),
        "right": line_through(tr, br),
        "bottom": line_through(br, bl),
        "left": line_through(bl, tl),
    }
    skew = frame_skew_deg(lines)
    assert skew == pytest.approx({"frame": 0.5, "left": 0.5, "right": 0.5, "top": 0.5, "bottom": 0.5})


def test_station_ends_span_the_measured_width_on_the_graphic_line() -> None:
    # A leaning frame: each station's graphic end lies on its graphic line, its outer end on the card edge,
    # and the two are the measured width apart.
    lines = frame_lines(2.0, 3.0, 4.0, 1.5)
    lines["left"] = line_through((2.5, 0), (1.5, STANDARD.height_mm))
    for width in border_widths(lines, STANDARD):
        graphic, outer = station_ends(width.station, width.border_mm, STANDARD)
        assert abs(signed_distance(lines[width.station.edge], graphic[None])[0]) < 1e-9
        assert np.linalg.norm(graphic - outer) == pytest.approx(width.border_mm)
        assert min(outer[0], outer[1], STANDARD.width_mm - outer[0], STANDARD.height_mm - outer[1]) == 0
