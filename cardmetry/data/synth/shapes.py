"""Signed distances (mm) of the card's shapes and their exact anti-aliased coverage.

Edges are drawn by coverage, not by thresholding: a sample at signed distance d (in its own pixel units, negative
inside) is covered by clip(0.5 - d, 0, 1). That ramp is antisymmetric about the edge, so integrating the image
across an edge returns the true edge position exactly, whatever the edge's angle or sub-pixel phase.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RoundedRect:
    """A rectangle with rounded corners, rotated by `angle_deg` (clockwise on screen) about its centre."""

    centre: tuple[float, float]
    half_size: tuple[float, float]
    radius: float
    angle_deg: float = 0.0

    def to_local(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        du, dv = u - np.float32(self.centre[0]), v - np.float32(self.centre[1])
        if self.angle_deg == 0:
            return du, dv
        c, s = np.float32(np.cos(np.radians(self.angle_deg))), np.float32(np.sin(np.radians(self.angle_deg)))
        return du * c + dv * s, -du * s + dv * c

    def signed_distance(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Exact Euclidean signed distance in mm (negative inside)."""
        lu, lv = self.to_local(u, v)
        r = np.float32(self.radius)
        qu = np.abs(lu) - np.float32(self.half_size[0] - self.radius)
        qv = np.abs(lv) - np.float32(self.half_size[1] - self.radius)
        outside = np.hypot(np.maximum(qu, 0), np.maximum(qv, 0))
        inside = np.minimum(np.maximum(qu, qv), 0)
        return outside + inside - r

    def corners(self) -> np.ndarray:
        """Squared-off corners TL, TR, BR, BL in mm."""
        hu, hv = self.half_size
        local = np.array([[-hu, -hv], [hu, -hv], [hu, hv], [-hu, hv]])
        return self.from_local(local)

    def from_local(self, local: np.ndarray) -> np.ndarray:
        c, s = np.cos(np.radians(self.angle_deg)), np.sin(np.radians(self.angle_deg))
        rot = np.array([[c, -s], [s, c]])
        return local @ rot.T + np.asarray(self.centre)

    def outline(self, points_per_corner: int = 8) -> np.ndarray:
        """The outline as a polygon (mm), clockwise on screen from the top edge, arcs sampled at the corners."""
        hu, hv, r = self.half_size[0], self.half_size[1], self.radius
        if r <= 0:
            return self.corners()
        pts = []
        # corner centres TR, BR, BL, TL with the arc's start angle (y down: angle grows clockwise on screen)
        for (cu, cv), start in (
            ((hu - r, -hv + r), -90),
            ((hu - r, hv - r), 0),
            ((-hu + r, hv - r), 90),
            ((-hu + r, -hv + r), 180),
        ):
            for t in np.linspace(start, start + 90, points_per_corner):
                pts.append((cu + r * np.cos(np.radians(t)), cv + r * np.sin(np.radians(t))))
        return self.from_local(np.array(pts))


def coverage(signed_distance_px: np.ndarray) -> np.ndarray:
    """Share of a sample covered by the inside of an edge, from its signed distance in sample units."""
    return np.clip(np.float32(0.5) - signed_distance_px, 0, 1)
