"""Border widths at the 24 stations, as CONTRACT.md defines them, from the graphic edge lines in card mm."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cardmetry.geometry.homography import apply_homography, image_to_card
from cardmetry.geometry.lines import Line, intersect, line_angle_deg, quad_edges
from cardmetry.geometry.specs import CardSpec, Edge, Station


@dataclass(frozen=True)
class StationWidth:
    station: Station
    border_mm: float


def border_widths(graphic_lines_mm: dict[Edge, Line], spec: CardSpec) -> list[StationWidth]:
    """Outer-to-graphic distance at each station, along the inward normal of the outer edge.

    For L at height v it is u_graphic_left(v); for R, W - u_graphic_right(v); for T at u, v_graphic_top(u);
    for B, H - v_graphic_bottom(u).
    """
    w, h = spec.size_mm
    out = []
    for station in spec.stations():
        p = station.position_mm
        across = np.array([0.0, 1.0, -p]) if station.edge in ("left", "right") else np.array([1.0, 0.0, -p])
        u, v = intersect(graphic_lines_mm[station.edge], across)
        width = {"left": u, "right": w - u, "top": v, "bottom": h - v}[station.edge]
        out.append(StationWidth(station, float(width)))
    return out


def station_ends(station: Station, border_mm: float, spec: CardSpec) -> tuple[np.ndarray, np.ndarray]:
    """A station's point on the graphic edge and its foot on the outer edge, in card mm: the two ends of the
    distance `border_widths` measures there."""
    w, h = spec.size_mm
    p = station.position_mm
    return {
        "left": (np.array([border_mm, p]), np.array([0.0, p])),
        "right": (np.array([w - border_mm, p]), np.array([w, p])),
        "top": (np.array([p, border_mm]), np.array([p, 0.0])),
        "bottom": (np.array([p, h - border_mm]), np.array([p, h])),
    }[station.edge]


def side_means(widths: list[StationWidth]) -> dict[Edge, float]:
    sums: dict[Edge, list[float]] = {"left": [], "right": [], "top": [], "bottom": []}
    for sw in widths:
        sums[sw.station.edge].append(sw.border_mm)
    return {edge: float(np.mean(values)) for edge, values in sums.items()}


def centering(widths: list[StationWidth]) -> dict[str, object]:
    """Mean and worst-station centering per axis (CONTRACT.md), ratios in percent."""
    means = side_means(widths)
    by_id = {sw.station.id: sw.border_mm for sw in widths}

    def ratio(a: float, b: float) -> list[float]:
        return [100 * a / (a + b), 100 * b / (a + b)]

    def worst(first: str, second: str) -> dict[str, object]:
        pairs = []
        k = 1
        while f"{first}{k}" in by_id:
            pairs.append((k, ratio(by_id[f"{first}{k}"], by_id[f"{second}{k}"])))
            k += 1
        station, r = max(pairs, key=lambda item: max(item[1]))
        return {"ratio": r, "station": station}

    return {
        "left_right": ratio(means["left"], means["right"]),
        "top_bottom": ratio(means["top"], means["bottom"]),
        "worst_left_right": worst("L", "R"),
        "worst_top_bottom": worst("T", "B"),
    }


def frame_skew_deg(graphic_lines_mm: dict[Edge, Line]) -> dict[str, float]:
    """Angle of each graphic edge against the card outline (positive = clockwise), and their mean as the frame's."""
    left = line_angle_deg(graphic_lines_mm["left"]) - 90
    right = line_angle_deg(graphic_lines_mm["right"]) - 90
    per_edge = {
        "left": _wrap(left),
        "right": _wrap(right),
        "top": line_angle_deg(graphic_lines_mm["top"]),
        "bottom": line_angle_deg(graphic_lines_mm["bottom"]),
    }
    return {"frame": float(np.mean(list(per_edge.values()))), **per_edge}


def _wrap(angle: float) -> float:
    return (angle + 90) % 180 - 90


def graphic_lines_in_card(outer_quad_px: np.ndarray, graphic_quad_px: np.ndarray, spec: CardSpec) -> dict[Edge, Line]:
    """The graphic quad's edge lines in the rectified card frame defined by the outer quad (CONTRACT.md)."""
    to_card = image_to_card(outer_quad_px, spec)
    return quad_edges(apply_homography(to_card, graphic_quad_px))  # type: ignore[return-value]
