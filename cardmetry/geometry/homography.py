"""Plane homographies between image pixels and the rectified card (mm)."""

from __future__ import annotations

import numpy as np

from cardmetry.geometry.specs import CardSpec


def homography_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 3x3 homography taking four or more src points to dst (least squares DLT, normalised)."""
    src, dst = np.asarray(src, float).reshape(-1, 2), np.asarray(dst, float).reshape(-1, 2)
    if len(src) < 4 or len(src) != len(dst):
        raise ValueError("a homography needs at least four point pairs")
    ts, td = _normaliser(src), _normaliser(dst)
    s, d = apply_homography(ts, src), apply_homography(td, dst)
    rows = []
    for (x, y), (u, v) in zip(s, d, strict=True):
        rows.append([-x, -y, -1, 0, 0, 0, u * x, u * y, u])
        rows.append([0, 0, 0, -x, -y, -1, v * x, v * y, v])
    _, _, vt = np.linalg.svd(np.asarray(rows))
    h = vt[-1].reshape(3, 3)
    h = np.linalg.inv(td) @ h @ ts
    return h / h[2, 2]


def _normaliser(points: np.ndarray) -> np.ndarray:
    """Hartley normalisation: centre the points and scale their mean distance to sqrt(2)."""
    centre = points.mean(axis=0)
    scale = np.sqrt(2) / max(np.mean(np.linalg.norm(points - centre, axis=1)), 1e-12)
    return np.array([[scale, 0, -scale * centre[0]], [0, scale, -scale * centre[1]], [0, 0, 1]])


def apply_homography(h: np.ndarray, points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, float)
    flat = pts.reshape(-1, 2)
    mapped = flat @ h[:, :2].T + h[:, 2]
    return (mapped[:, :2] / mapped[:, 2:3]).reshape(pts.shape)


def card_corners_mm(spec: CardSpec) -> np.ndarray:
    """The squared-off outline corners TL, TR, BR, BL in card mm."""
    w, h = spec.size_mm
    return np.array([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]])


def image_to_card(outer_quad_px: np.ndarray, spec: CardSpec) -> np.ndarray:
    """The homography from image pixels to the rectified card frame (mm)."""
    return homography_from_points(outer_quad_px, card_corners_mm(spec))


def transform_line(h: np.ndarray, line: np.ndarray) -> np.ndarray:
    """Map a homogeneous line through homography h (lines transform by the inverse transpose)."""
    mapped = np.linalg.inv(h).T @ np.asarray(line, float)
    return mapped / np.hypot(mapped[0], mapped[1])
