"""Where a scene's card lands in the image, and the exact truth that follows from it.

Truth is computed from the geometry, never from pixels: the outer and graphic quads (OpenCV pixel convention),
the instance polygons (label convention, pixel edge at 0), and the 24 border widths of CONTRACT.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cardmetry.data.instances import cv_to_label
from cardmetry.data.synth.scene import Scene
from cardmetry.data.synth.shapes import RoundedRect
from cardmetry.geometry.homography import apply_homography, card_corners_mm, homography_from_points, transform_line
from cardmetry.geometry.lines import quad_edges, quad_from_lines
from cardmetry.geometry.specs import Edge
from cardmetry.geometry.stations import StationWidth, border_widths, centering, frame_skew_deg


@dataclass(frozen=True)
class Placement:
    """The card-to-image homography (card mm to OpenCV pixels) and the image size."""

    card_to_image: np.ndarray
    width: int
    height: int

    @property
    def image_to_card(self) -> np.ndarray:
        return np.linalg.inv(self.card_to_image)


@dataclass(frozen=True)
class Truth:
    outer_quad_px: np.ndarray  # (4, 2) TL, TR, BR, BL of the upright card, OpenCV convention
    graphic_quad_px: np.ndarray
    outer_polygon: np.ndarray  # (N, 2) label convention, rounded corners sampled
    graphic_polygon: np.ndarray
    widths: list[StationWidth]
    centering: dict[str, object]
    skew_deg: dict[str, float]
    px_per_mm: float
    upright_flipped: bool  # the contract's upright card is the rendered card turned by 180 deg

    def as_json(self) -> dict[str, object]:
        return {
            "outer_quad_px": self.outer_quad_px.tolist(),
            "graphic_quad_px": self.graphic_quad_px.tolist(),
            "px_per_mm": self.px_per_mm,
            "points": [
                {
                    "id": sw.station.id,
                    "edge": sw.station.edge,
                    "position_mm": sw.station.position_mm,
                    "border_mm": sw.border_mm,
                }
                for sw in self.widths
            ],
            "centering": self.centering,
            "skew_deg": self.skew_deg,
            "upright_flipped": self.upright_flipped,
        }


def card_shape(scene: Scene) -> RoundedRect:
    w, h = scene.spec.size_mm
    return RoundedRect((w / 2, h / 2), (w / 2, h / 2), scene.spec.corner_radius_mm)


def frame_shape(scene: Scene) -> RoundedRect:
    """The printed frame: the border widths before skew, turned by the print skew about its own centre."""
    w, h = scene.spec.size_mm
    b = scene.borders_mm
    left, right, top, bottom = b["left"], w - b["right"], b["top"], h - b["bottom"]
    return RoundedRect(
        ((left + right) / 2, (top + bottom) / 2),
        ((right - left) / 2, (bottom - top) / 2),
        scene.look.frame_corner_radius_mm,
        scene.print_skew_deg,
    )


def place(scene: Scene) -> Placement:
    """Scale, rotate and (for photos) tilt the card, then frame it with the margin."""
    cap, spec = scene.capture, scene.spec
    w, h = spec.size_mm
    s = cap.px_per_mm
    corners = card_corners_mm(spec) - (w / 2, h / 2)
    theta = math.radians(cap.rotation_deg)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    px = (corners * s) @ rot.T
    px = px + np.asarray(scene.corner_offsets) * (s * w, s * h)
    margin = cap.margin_mm * s
    origin = px.min(axis=0) - margin
    px = px - origin
    extent = px.max(axis=0) + margin
    return Placement(
        card_to_image=homography_from_points(card_corners_mm(spec), px),
        width=math.ceil(extent[0]) + 1,
        height=math.ceil(extent[1]) + 1,
    )


def upright_flip_needed(scene: Scene, placement: Placement) -> bool:
    """True when the smallest rotation that stands the card upright is the rendered card turned by 180 deg."""
    w, h = scene.spec.size_mm
    top, bottom = apply_homography(placement.card_to_image, np.array([[w / 2, 0.0], [w / 2, h]]))
    up = top - bottom
    angle_from_image_up = math.degrees(math.atan2(up[0], -up[1]))
    return abs(angle_from_image_up) > 90


def compute_truth(scene: Scene, placement: Placement) -> Truth:
    spec = scene.spec
    w, h = spec.size_mm
    frame = frame_shape(scene)
    _check_stations_on_straight_frame(scene, frame)
    flipped = upright_flip_needed(scene, placement)
    # In the contract frame the card is upright; when that is the render turned by 180 deg, compose with the flip.
    flip = np.array([[-1.0, 0, w], [0, -1.0, h], [0, 0, 1]]) if flipped else np.eye(3)
    card_to_image = placement.card_to_image @ flip
    lines: dict[Edge, np.ndarray] = {}
    for edge, line in quad_edges(frame.corners()).items():
        mapped = transform_line(flip, line)  # the flip is its own inverse
        lines[_flipped_edge(edge) if flipped else edge] = mapped
    graphic_corners_mm = quad_from_lines(lines["top"], lines["right"], lines["bottom"], lines["left"])
    widths = border_widths(lines, spec)
    return Truth(
        outer_quad_px=apply_homography(card_to_image, card_corners_mm(spec)),
        graphic_quad_px=apply_homography(card_to_image, graphic_corners_mm),
        outer_polygon=cv_to_label(apply_homography(placement.card_to_image, card_shape(scene).outline())),
        graphic_polygon=cv_to_label(apply_homography(placement.card_to_image, frame.outline())),
        widths=widths,
        centering=centering(widths),
        skew_deg=frame_skew_deg(lines),
        px_per_mm=scene.capture.px_per_mm,
        upright_flipped=flipped,
    )


def _flipped_edge(edge: str) -> Edge:
    return {"top": "bottom", "bottom": "top", "left": "right", "right": "left"}[edge]  # type: ignore[return-value]


def _check_stations_on_straight_frame(scene: Scene, frame: RoundedRect, clearance_mm: float = 0.2) -> None:
    """Every station must meet a straight part of the frame edge, or its truth would be ill-defined."""
    hu, hv = frame.half_size
    straight = {"left": hv, "right": hv, "top": hu, "bottom": hu}
    for sw in border_widths(quad_edges(frame.corners()), scene.spec):
        p = sw.station.position_mm
        u = {"left": sw.border_mm, "right": scene.spec.width_mm - sw.border_mm}.get(sw.station.edge, p)
        v = {"top": sw.border_mm, "bottom": scene.spec.height_mm - sw.border_mm}.get(sw.station.edge, p)
        lu, lv = frame.to_local(np.float32(u), np.float32(v))
        along = abs(float(lv if sw.station.edge in ("left", "right") else lu))
        if along > straight[sw.station.edge] - frame.radius - clearance_mm:
            raise ValueError(
                f"station {sw.station.id} misses the straight part of the frame edge; "
                f"borders {scene.borders_mm} are too wide for this card spec"
            )
