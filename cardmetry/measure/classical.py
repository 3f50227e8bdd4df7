"""Coarse borders without a model: a card on a plain contrasting background (a scanner lid, a desk).

The outer border is the largest region that differs from the background's colour, taken from the image's margin;
the graphic border is, on each side, the first place inward from the card's edge where the colour leaves the
border's own colour. Both only have to be within a few pixels: `engine.measure_borders` fits the edges again.
"""

from __future__ import annotations

import cv2
import numpy as np

from cardmetry.geometry.edges import colour_distance, fit_line_robust, locate_edges, sample_profiles
from cardmetry.geometry.lines import (
    QUAD_SIDES,
    angle_between_deg,
    order_quad,
    quad_edges,
    quad_from_lines,
    upright_quad,
)
from cardmetry.geometry.specs import CardSpec

_WORK_SIDE = 800  # the outer search runs on a copy this large: the card's outline needs no more
_MARGIN_SHARE = 0.02  # the strip along the image's edges that shows the background


def detect_outer(image: np.ndarray, spec: CardSpec) -> np.ndarray | str:
    """The card's outer quad (OpenCV pixels, upright order), or the reason it cannot be found."""
    height, width = image.shape[:2]
    scale = min(1.0, _WORK_SIDE / max(height, width))
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image
    small = cv2.GaussianBlur(small.astype(np.float32), (0, 0), 1.5)
    h, w = small.shape[:2]
    m = max(2, int(_MARGIN_SHARE * min(h, w)))
    margin = np.concatenate(
        [small[:m].reshape(-1, 3), small[-m:].reshape(-1, 3), small[:, :m].reshape(-1, 3), small[:, -m:].reshape(-1, 3)]
    )
    background = np.median(margin, axis=0)
    distance = np.linalg.norm(small - background, axis=2)
    level, mask = cv2.threshold(np.clip(distance, 0, 255).astype(np.uint8), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])) if count > 1 else 0
    if biggest and stats[biggest, cv2.CC_STAT_AREA] >= 0.1 * h * w:
        x, y, bw, bh = stats[biggest, :4]
        if x <= 0 or y <= 0 or x + bw >= w or y + bh >= h:
            return "the card is cut off by the edge of the image"
    # The threshold must separate: the background around the card (with a gradient, a sleeve's edge) below it.
    around = np.ones((h, w), bool)
    around[m:-m, m:-m] = False
    around &= labels != biggest
    if level < 12 or not biggest or np.mean(distance[around] > level) > 0.05:
        return "the card does not stand out from the background (too little contrast at its edge)"
    if stats[biggest, cv2.CC_STAT_AREA] < 0.1 * h * w:
        return "no card found: the largest region is under a tenth of the image"
    region = (labels == biggest).astype(np.uint8)
    region = cv2.morphologyEx(region, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    outline = max(contours, key=cv2.contourArea).reshape(-1, 2).astype(float)
    quad = _quad_from_outline(outline)
    sides = np.linalg.norm(quad - np.roll(quad, -1, axis=0), axis=1)
    aspect = max(sides[0] + sides[2], sides[1] + sides[3]) / min(sides[0] + sides[2], sides[1] + sides[3])
    if abs(aspect / spec.aspect - 1) > 0.12:
        return f"the region found is not card-shaped (aspect {aspect:.2f}, a {spec.name} card is {spec.aspect:.2f})"
    # Pixel centres map between sizes as x_full = (x_small + 0.5) / scale - 0.5.
    return upright_quad((quad + 0.5) / scale - 0.5)


def _quad_from_outline(hull: np.ndarray) -> np.ndarray:
    """Four corners of a rounded-rectangle outline (every contour pixel): the points farthest along the diagonals
    of its minimum-area rectangle, refined to where lines fitted to the middles of the straight sides meet."""
    (cx, cy), _, angle = cv2.minAreaRect(hull.astype(np.float32))
    theta = np.radians(angle)
    axes = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])
    local = (hull - (cx, cy)) @ axes.T
    corners = np.array(
        [hull[np.argmax(sx * local[:, 0] + sy * local[:, 1])] for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    )
    rough = order_quad(corners)
    lines = []
    for k in range(4):
        p, q = rough[k], rough[(k + 1) % 4]
        length = np.linalg.norm(q - p)
        t = (hull - p) @ ((q - p) / length) / length
        distance = np.abs((hull - p) @ (np.array([-(q - p)[1], (q - p)[0]]) / length))
        straight = hull[(t > 0.2) & (t < 0.8) & (distance < 0.02 * length + 2)]
        lines.append(fit_line_robust(straight, inlier_threshold_px=1.5).line if len(straight) >= 2 else None)
    if any(line is None for line in lines):
        return rough
    return quad_from_lines(*lines)


def detect_graphic(image: np.ndarray, outer_quad: np.ndarray, spec: CardSpec) -> np.ndarray | str:
    """The graphic quad inside a card's outer quad: on each side, the first step away from the border's colour."""
    px_per_mm = float(
        np.mean(np.linalg.norm(outer_quad - np.roll(outer_quad, -1, axis=0), axis=1)) / np.mean(spec.size_mm)
    )
    centre = outer_quad.mean(axis=0)
    lines = {}
    for name, line in quad_edges(outer_quad).items():
        corners = QUAD_SIDES[name]
        p0, p1 = outer_quad[corners[0]], outer_quad[corners[1]]
        inward = np.array(line[:2]) * (1 if line[:2] @ centre + line[2] > 0 else -1)
        profiles = sample_profiles(
            image,
            p0,
            p1,
            offset_range=(0.3 * px_per_mm, 8.0 * px_per_mm),
            offset_step=0.5,
            spacing=2.0,
            margin=7.0 * px_per_mm,
            normal=inward,
        )
        values = profiles.values.astype(float)
        reference_end = max(2, int(0.4 * px_per_mm / 0.5))
        border = np.nanmedian(values[:, :reference_end], axis=1)
        hits = locate_edges(
            colour_distance(values, border), profiles.offsets, polarity=1, select="first", min_gradient=4.0
        )
        points = profiles.points_at(hits.offsets)[hits.found]
        if hits.found.mean() < 0.3 or len(points) < 10:
            return f"no graphic border found along the {name} side (the art does not differ from the border)"
        fit = fit_line_robust(points, inlier_threshold_px=2.0)
        if fit.count < 0.4 * len(hits.found):
            return f"no straight graphic border along the {name} side (only {fit.count / len(hits.found):.0%} agree)"
        if angle_between_deg(fit.line, line) > 3.0:
            return f"the graphic border found along the {name} side is not parallel to the card's edge"
        lines[name] = fit.line
    return quad_from_lines(lines["top"], lines["right"], lines["bottom"], lines["left"])
