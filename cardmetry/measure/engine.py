"""From an image and coarse borders to a Measurement: the heart of `cardmetry measure`.

The coarse borders (from a model or a classical detector) only have to be within a few pixels. Each of the eight
straight edges is fitted again from the pixels (`edgefit`), the outer quad defines the card frame through a
homography, and the 24 border widths, centering, skew and their uncertainties follow as CONTRACT.md defines them.
Anything that makes a number untrustworthy is either a quality flag or, when it would make the number wrong, a
refusal with its reason.
"""

from __future__ import annotations

import time

import numpy as np

from cardmetry.geometry.homography import apply_homography, image_to_card, transform_line
from cardmetry.geometry.lines import QUAD_SIDES, align_quad, order_quad, quad_edges, quad_from_lines, upright_quad
from cardmetry.geometry.specs import EDGES, CardSpec, Edge
from cardmetry.geometry.stations import border_widths, centering, frame_skew_deg, station_ends
from cardmetry.measure.edgefit import EdgeFit, fit_edge
from cardmetry.measure.result import Measurement, PointResult, Refusal

OUTER_CORNER_CLEARANCE_MM = 4.0  # the card's 3 mm corner radius, and a millimetre for wear
GRAPHIC_CORNER_CLEARANCE_MM = 1.5  # printed frames round their corners less, if at all
MAX_FRAME_SHEAR_DEG = 0.3  # a printed frame is a rigid rectangle: its edges turn together, within this
MAX_RULE_MM = 0.6  # a printed rule at the frame's edge is thinner than this; wider, it is a border of its own
MIN_RULE_PX_PER_MM = 5.0  # below this a rule is a pixel or so wide: a line, not a bar whose two sides a fit can tell
RULE_AGREEMENT = 1.5  # one edge's rule this many times wider than every other edge's is not the frame's rule
CLEARLY_TURNED_DEG = 0.05  # an edge's second candidate turns with the frame this much better to replace the first
MIN_PX_PER_MM = 8.0  # below about 200 dpi a pixel is wider than the precision a grader needs
WEAK_EDGE_LEVELS = 20.0  # a step smaller than this (of 255) is measured but flagged
# Steps scatter about a clean edge's line by 0.05-0.25 px on renders, and 0.3-1 px on real scans' halftone and
# paper. An edge scattering far more than the card's other edges of its kind may be tilted by what crosses it, and
# its uncertainty, derived from that scatter, may be too small: flagged for a person to look at.
POOR_FIT_RMS_PX = 0.5
POOR_FIT_RATIO = 3.0


def measure_borders(
    image: np.ndarray,
    coarse_outer: np.ndarray,
    coarse_graphic: np.ndarray,
    spec: CardSpec,
    *,
    side: str = "front",
    image_name: str = "",
) -> Measurement | Refusal:
    """Measure a card from coarse outer and graphic quads (OpenCV pixels, any corner order)."""
    start = time.perf_counter()
    height, width = image.shape[:2]
    outer_coarse = upright_quad(order_quad(coarse_outer))
    graphic_coarse = align_quad(order_quad(coarse_graphic), outer_coarse)
    if np.any(outer_coarse < 1) or np.any(outer_coarse[:, 0] > width - 2) or np.any(outer_coarse[:, 1] > height - 2):
        return Refusal(image_name, side, "the card is cut off by the edge of the image")
    px_per_mm = _scale(outer_coarse, spec)
    flags = []
    if px_per_mm < MIN_PX_PER_MM:
        flags.append(f"resolution {px_per_mm:.1f} px/mm is too low for 0.01 mm precision")

    fits: dict[str, dict[Edge, EdgeFit]] = {"outer": {}, "graphic": {}}
    quads = {"outer": outer_coarse, "graphic": graphic_coarse}
    widest_rule = MAX_RULE_MM * px_per_mm if px_per_mm >= MIN_RULE_PX_PER_MM else 0.0
    for role in ("outer", "graphic"):
        for edge in EDGES:
            result = _fit(image, quads[role], edge, role, px_per_mm, fits["outer"], widest_rule)
            if isinstance(result, str):
                return Refusal(image_name, side, f"{role} {edge} edge: {result}", flags)
            fits[role][edge] = result
    for edge, limit in _odd_rules(fits["graphic"]).items():
        result = _fit(image, quads["graphic"], edge, "graphic", px_per_mm, fits["outer"], limit)
        if isinstance(result, str):
            return Refusal(image_name, side, f"graphic {edge} edge: {result}", flags)
        fits["graphic"][edge] = result
    for role in ("outer", "graphic"):
        flags += _fit_flags(role, fits[role])

    outer_quad = _quad(fits["outer"])
    to_card = image_to_card(outer_quad, spec)
    fits["graphic"] = _frame_edges(fits["graphic"], to_card)
    graphic_quad = _quad(fits["graphic"])
    lines_mm = {edge: transform_line(to_card, fits["graphic"][edge].line) for edge in EDGES}
    skew = frame_skew_deg(lines_mm)
    rigid = _rigid_frame_problem(skew)
    if rigid:
        return Refusal(image_name, side, rigid, flags)
    widths = border_widths(lines_mm, spec)
    if any(not 0 < w.border_mm < 0.4 * spec.width_mm for w in widths):
        return Refusal(image_name, side, "the graphic border found does not lie inside the card's border", flags)
    aspect_flag = _aspect_flag(outer_quad, spec)
    if aspect_flag:
        flags.append(aspect_flag)

    to_image = np.linalg.inv(to_card)
    points = []
    for w in widths:
        graphic_point, outer_point = station_ends(w.station, w.border_mm, spec)
        g_px, o_px = apply_homography(to_image, np.array([graphic_point, outer_point]))
        local_px_per_mm = float(np.linalg.norm(g_px - o_px) / max(w.border_mm, 1e-9))
        sigma_px = np.hypot(
            fits["graphic"][w.station.edge].sigma_px(g_px), fits["outer"][w.station.edge].sigma_px(o_px)
        )
        points.append(
            PointResult(w.station.id, w.station.edge, w.station.position_mm, w.border_mm, sigma_px / local_px_per_mm)
        )
    return Measurement(
        image=image_name,
        side=side,
        spec=spec,
        outer_quad_px=outer_quad,
        graphic_quad_px=graphic_quad,
        px_per_mm=px_per_mm,
        points=points,
        centering=centering(widths),
        skew_deg=skew,
        flags=flags,
        outer_fit_rms_px=_rms(fits["outer"]),
        graphic_fit_rms_px=_rms(fits["graphic"]),
        timing_ms={"total": (time.perf_counter() - start) * 1000},
    )


def _fit(
    image: np.ndarray,
    quad: np.ndarray,
    edge: Edge,
    role: str,
    px_per_mm: float,
    outer_fits: dict[Edge, EdgeFit],
    widest_rule_px: float,
) -> EdgeFit | str:
    """One edge of the coarse quad fitted again from the pixels, clear of the corners; a graphic edge with a rule
    up to `widest_rule_px` beside it."""
    clearance = OUTER_CORNER_CLEARANCE_MM if role == "outer" else GRAPHIC_CORNER_CLEARANCE_MM
    p0, p1 = quad[QUAD_SIDES[edge][0]], quad[QUAD_SIDES[edge][1]]
    step = (p1 - p0) / np.linalg.norm(p1 - p0) * clearance * px_per_mm
    return fit_edge(
        image,
        quad_edges(quad)[edge],
        p0 + step,
        p1 - step,
        inside=quad.mean(axis=0),
        max_rule_px=widest_rule_px if role == "graphic" else 0.0,
        blur_px=_blur(outer_fits) if role == "graphic" else None,
        # Name plates and logos printed across the frame can hide half of a graphic edge; a card edge hides less.
        min_inlier_share=0.35 if role == "graphic" else 0.5,
        card_edge=role == "outer",
    )


def _odd_rules(fits: dict[Edge, EdgeFit]) -> dict[Edge, float]:
    """The graphic edges whose rule is far wider than the ones the other edges found, each with the widest rule to
    look for when it is fitted again: a bit wider than the others' median.

    A printed frame is lined by one rule, the same ink and width all around. Where the art beside a thin rule is
    lighter than the rule's own edge on one stretch and darker on another, or a name plate covers half the edge,
    the search for the rule can pair the frame's edge with something else several pixels inward; the step fitted
    with that wrong width lands on neither side of the rule, and the line through the stretches tilts.
    """
    found = {edge: fit.rule_px for edge, fit in fits.items() if fit.rule_px}
    odd = {}
    for edge, width in found.items():
        others = [w for e, w in found.items() if e != edge]
        if len(others) >= 2 and width > RULE_AGREEMENT * max(others):
            odd[edge] = RULE_AGREEMENT * float(np.median(others))
    return odd


def _fit_flags(role: str, fits: dict[Edge, EdgeFit]) -> list[str]:
    flags = []
    poor_fit_px = max(POOR_FIT_RMS_PX, POOR_FIT_RATIO * float(np.median([f.rms_px for f in fits.values()])))
    for edge, fit in fits.items():
        if fit.contrast < WEAK_EDGE_LEVELS:
            flags.append(f"weak {role} {edge} edge (contrast {fit.contrast:.0f} levels)")
        if fit.inliers < 0.8 * fit.profiles:
            flags.append(f"{role} {edge} edge partly occluded ({fit.inliers / fit.profiles:.0%} on the line)")
        if fit.rms_px > poor_fit_px:
            flags.append(f"{role} {edge} edge fits poorly (steps scatter {fit.rms_px:.2f} px RMS about its line)")
    return flags


def _scale(quad: np.ndarray, spec: CardSpec) -> float:
    """Mean px per mm from the quad's side lengths against the card's size."""
    sides = np.linalg.norm(quad - np.roll(quad, -1, axis=0), axis=1)
    return float(((sides[0] + sides[2]) / spec.width_mm + (sides[1] + sides[3]) / spec.height_mm) / 4)


def _quad(fits: dict[Edge, EdgeFit]) -> np.ndarray:
    return quad_from_lines(fits["top"].line, fits["right"].line, fits["bottom"].line, fits["left"].line)


def _blur(fits: dict[Edge, EdgeFit]) -> float:
    """The image's blur as the card's own edges show it in luma: plain steps, where a rule's bar cannot mislead it."""
    return float(np.median([f.blur_px for f in fits.values()]))


def _rms(fits: dict[Edge, EdgeFit]) -> float:
    return float(np.sqrt(np.mean([f.rms_px**2 for f in fits.values()])))


def _frame_edges(fits: dict[Edge, EdgeFit], to_card: np.ndarray) -> dict[Edge, EdgeFit]:
    """Each graphic edge's fit, or the second straight edge its steps support where that one turns with the rest of
    the frame clearly better: a name plate printed square to the card lies across a frame printed askew, and where
    its edge runs beside the frame's over most of the frame's length, it is the line more steps agree on. Where the
    two turn alike, the one more steps agree on stays."""
    chosen = dict(fits)
    for edge, fit in fits.items():
        if fit.alternative is None:
            continue
        if _lean_deg(fits, edge, fit, to_card) - _lean_deg(fits, edge, fit.alternative, to_card) > CLEARLY_TURNED_DEG:
            chosen[edge] = fit.alternative
    return chosen


def _lean_deg(fits: dict[Edge, EdgeFit], edge: Edge, candidate: EdgeFit, to_card: np.ndarray) -> float:
    """How far a candidate for one edge turns from the frame's other three edges (their median angle)."""
    lines = {e: transform_line(to_card, (candidate if e == edge else fits[e]).line) for e in EDGES}
    skew = frame_skew_deg(lines)
    return abs(skew[edge] - float(np.median([skew[e] for e in EDGES if e != edge])))


def _rigid_frame_problem(skew: dict[str, float]) -> str | None:
    """A printed frame is rotated as a whole; an edge that leans against the other three was not the frame's (a name
    plate, a logo or art lying across it), and its border widths would be wrong."""
    edges = {edge: skew[edge] for edge in EDGES}
    median = float(np.median(list(edges.values())))
    worst = max(edges, key=lambda edge: abs(edges[edge] - median))
    if abs(edges[worst] - median) > MAX_FRAME_SHEAR_DEG:
        return (
            f"the graphic {worst} edge leans {edges[worst] - median:+.2f} deg against the rest of the frame: "
            "probably not the frame's edge (something printed across it?)"
        )
    return None


def _aspect_flag(quad: np.ndarray, spec: CardSpec) -> str | None:
    """The outer quad's own aspect (mean of opposite sides) against the spec's; perspective can explain a few %."""
    sides = np.linalg.norm(quad - np.roll(quad, -1, axis=0), axis=1)
    aspect = (sides[1] + sides[3]) / (sides[0] + sides[2])
    off = aspect / spec.aspect - 1
    if abs(off) > 0.03:
        return f"aspect ratio {aspect:.3f} is {off:+.1%} off the {spec.name} card's {spec.aspect:.3f}"
    return None
