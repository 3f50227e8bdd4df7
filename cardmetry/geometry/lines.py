"""Straight lines and quadrilaterals.

A line is a normalised homogeneous triple (a, b, c) with a**2 + b**2 == 1: the signed distance of (x, y) from it
is a*x + b*y + c. A quad is a (4, 2) array of corners ordered top-left, top-right, bottom-right, bottom-left.
"""

from __future__ import annotations

import numpy as np

Line = np.ndarray  # shape (3,)

# The corners (indices into an ordered quad) at the ends of each side.
QUAD_SIDES: dict[str, tuple[int, int]] = {"top": (0, 1), "right": (1, 2), "bottom": (2, 3), "left": (3, 0)}


def line_through(p: np.ndarray, q: np.ndarray) -> Line:
    """The line through two distinct points."""
    (x0, y0), (x1, y1) = np.asarray(p, float), np.asarray(q, float)
    a, b = y0 - y1, x1 - x0
    norm = np.hypot(a, b)
    if norm == 0:
        raise ValueError("a line needs two distinct points")
    return np.array([a, b, x0 * y1 - x1 * y0]) / norm


def signed_distance(line: Line, points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, float)
    return pts[..., 0] * line[0] + pts[..., 1] * line[1] + line[2]


def intersect(l1: Line, l2: Line) -> np.ndarray:
    """The point where two lines cross; ValueError for parallel lines."""
    x, y, w = np.cross(l1, l2)
    if abs(w) < 1e-12:
        raise ValueError("parallel lines do not intersect")
    return np.array([x / w, y / w])


def angle_between_deg(l1: Line, l2: Line) -> float:
    """The unsigned angle between two lines, in [0, 90] degrees."""
    return float(np.degrees(np.arccos(np.clip(abs(l1[:2] @ l2[:2]), 0.0, 1.0))))


def quad_side_ends(quad: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each side's two corners of an ordered quad, running clockwise on screen (inside to the right of travel)."""
    q = np.asarray(quad, float)
    return {side: (q[i], q[j]) for side, (i, j) in QUAD_SIDES.items()}


def line_angle_deg(line: Line) -> float:
    """Direction of the line in degrees, in (-90, 90], measured from the +x axis towards +y (clockwise on screen)."""
    angle = np.degrees(np.arctan2(line[0], -line[1]))
    if angle <= -90:
        angle += 180
    elif angle > 90:
        angle -= 180
    return float(angle)


def quad_from_lines(top: Line, right: Line, bottom: Line, left: Line) -> np.ndarray:
    """Corners TL, TR, BR, BL where the four edge lines cross."""
    return np.array([intersect(top, left), intersect(top, right), intersect(bottom, right), intersect(bottom, left)])


def quad_edges(quad: np.ndarray) -> dict[str, Line]:
    """The four edge lines of an ordered quad."""
    return {side: line_through(p, q) for side, (p, q) in quad_side_ends(quad).items()}


def order_quad(points: np.ndarray) -> np.ndarray:
    """Order four corners as TL, TR, BR, BL (image coordinates, y down), whatever order they came in."""
    pts = np.asarray(points, float).reshape(4, 2)
    centre = pts.mean(axis=0)
    angles = np.arctan2(pts[:, 1] - centre[1], pts[:, 0] - centre[0])
    pts = pts[np.argsort(angles)]  # clockwise on screen, starting from the leftmost-upper quadrant
    start = int(np.argmin(pts.sum(axis=1)))  # top-left has the smallest x + y
    return np.roll(pts, -start, axis=0)


def polygon_area(polygon: np.ndarray) -> float:
    """Unsigned area by the shoelace formula."""
    pts = np.asarray(polygon, float).reshape(-1, 2)
    if len(pts) < 3:
        return 0.0
    x, y = pts[:, 0], pts[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def fit_line(points: np.ndarray) -> Line:
    """Total least squares line through points (no outlier rejection: see edges.py for robust fits)."""
    pts = np.asarray(points, float).reshape(-1, 2)
    if len(pts) < 2:
        raise ValueError("a line fit needs at least two points")
    centre = pts.mean(axis=0)
    _, _, vt = np.linalg.svd(pts - centre, full_matrices=False)
    a, b = vt[-1]
    return np.array([a, b, -(a * centre[0] + b * centre[1])])


def quad_from_polygon(polygon: np.ndarray, corner_share: float = 0.15) -> np.ndarray:
    """The four straight edges of a card-like polygon (rounded corners allowed), intersected into an ordered quad.

    The rough corners come from the polygon's simplification to four points; each edge is then refitted to the
    polygon's points along its middle, leaving `corner_share` of its length at each end out so that rounded
    corners do not pull it.
    """
    pts = np.asarray(polygon, float).reshape(-1, 2)
    if len(pts) < 4:
        raise ValueError(f"a quad needs a polygon of at least 4 points, got {len(pts)}")
    rough = order_quad(_four_extreme_corners(pts))
    dense = _densify(pts)
    lines = []
    for k in range(4):
        p, q = rough[k], rough[(k + 1) % 4]
        direction = (q - p) / np.linalg.norm(q - p)
        t = (dense - p) @ direction / np.linalg.norm(q - p)
        line = line_through(p, q)
        near = np.abs(signed_distance(line, dense)) < 0.02 * np.linalg.norm(q - p) + 1.0
        chosen = dense[near & (t > corner_share) & (t < 1 - corner_share)]
        lines.append(fit_line(chosen) if len(chosen) >= 2 else line)
    top, right, bottom, left = lines
    return quad_from_lines(top, right, bottom, left)


def _four_extreme_corners(pts: np.ndarray) -> np.ndarray:
    """Corners of a convex, roughly rectangular outline: the points farthest along the four diagonal directions
    of its own minimum-area rectangle's axes."""
    centre = pts.mean(axis=0)
    cov = np.cov((pts - centre).T)
    _, vecs = np.linalg.eigh(cov)
    local = (pts - centre) @ vecs
    corners = []
    for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
        corners.append(pts[np.argmax(sx * local[:, 0] + sy * local[:, 1])])
    return np.array(corners)


def _densify(pts: np.ndarray, step: float = 2.0) -> np.ndarray:
    """Points every `step` units along the closed polygon, so long straight sides carry many samples."""
    segments = np.roll(pts, -1, axis=0) - pts
    counts = np.maximum(1, np.ceil(np.linalg.norm(segments, axis=1) / step)).astype(int)
    owner = np.repeat(np.arange(len(pts)), counts)
    fraction = (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)) / counts[owner]
    return pts[owner] + segments[owner] * fraction[:, None]


def upright_quad(quad: np.ndarray) -> np.ndarray:
    """Relabel an ordered quad's corners so it describes a portrait card turned upright by the smallest rotation
    (CONTRACT.md: "top" is the edge nearest the top of the image once the card stands upright)."""
    best, best_angle = None, np.inf
    for k in range(4):
        q = np.roll(np.asarray(quad, float), -k, axis=0)
        tl, tr, br, bl = q
        if np.linalg.norm(tr - tl) + np.linalg.norm(br - bl) > np.linalg.norm(bl - tl) + np.linalg.norm(br - tr):
            continue  # in this labelling the card would lie landscape
        up = (tl + tr) / 2 - (bl + br) / 2
        angle = abs(np.arctan2(up[0], -up[1]))
        if angle < best_angle:
            best, best_angle = q, angle
    if best is None:  # a square: any labelling is portrait enough
        return np.asarray(quad, float)
    return best


def align_quad(quad: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Relabel an ordered quad's corners to match a reference quad's labelling (the graphic quad to its card's).

    Labelling each quad upright on its own can turn them 180 degrees apart when the card lies near sideways;
    the graphic frame's corners are always nearest the card's corresponding corners.
    """
    q = np.asarray(quad, float)
    turns = [np.roll(q, -k, axis=0) for k in range(4)]
    return min(turns, key=lambda t: float(np.linalg.norm(t - reference, axis=1).sum()))


def inward_normal(p0: np.ndarray, p1: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """The unit normal of the segment p0-p1 that points towards `inside`."""
    dx, dy = np.asarray(p1, float) - np.asarray(p0, float)
    normal = np.array([-dy, dx]) / np.hypot(dx, dy)
    return normal if normal @ (np.asarray(inside) - (np.asarray(p0) + np.asarray(p1)) / 2) > 0 else -normal


def quad_px_per_mm(quad: np.ndarray, width_mm: float, height_mm: float) -> float:
    """The scale of a card's quad (pixels per mm), whichever way round it lies."""
    sides = np.linalg.norm(quad - np.roll(quad, -1, axis=0), axis=1)
    short, long = sorted((sides[0] + sides[2], sides[1] + sides[3]))
    return float((short / width_mm + long / height_mm) / 4)
