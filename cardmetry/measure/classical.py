"""Coarse borders without a model: a card on a contrasting background (a scanner lid, a desk), sleeved or not.

Both quads only have to be within a few pixels: `engine.measure_borders` fits every edge again. The work is done
on a copy of the image reduced by a whole factor to about 600 px (a card's outline needs no more), then each
edge is placed once more across the line found, in a narrow window at full resolution.

The outer border:
1. The background's colours are learnt from the image's margin (`Background`): a lid's greys from shadow to
   sheen, or a desk under uneven light. A sleeve's or a toploader's haze blends the background near the card
   towards a light grey, so the same colours so blended count as background too. The largest outline of what
   is not background, less thin lines, gives a rough quad.
2. Across each rough side, the card's edge is the outermost place where the colour leaves the background's and
   stays off it over most of the next 1.5 mm: a sleeve's or toploader's edge, the bubbles of a lid or a fleck is
   a thin line, back to background at once. A robust line through those points.
3. Across that line at full resolution, the outermost colour step nearly as strong as the strongest nearby: a
   shadow beside the card's edge (darker than any background in the margin) is a weaker step than the card's
   own edge, or than its bright cut edge on a dark card.

The graphic border, on each side: the first place inward from the card's edge where the colour leaves the
border's own (`cardmetry.geometry.frame`, the rule box refinement uses too), with a name plate's edge told from
the frame's by which one runs past the other, or, where neither does (a plate at one end of the side), by which
one the frame's adjacent edges run to.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from cardmetry.geometry.edges import (
    EdgeHits,
    LineFit,
    Profiles,
    edge_profiles,
    fit_line_robust,
    locate_edges,
    sample_profiles,
    step_gradient_peak,
)
from cardmetry.geometry.frame import TwoEdgeRule, first_edge_from_border, frame_edge_or_pair
from cardmetry.geometry.homography import apply_homography, homography_from_points, transform_line
from cardmetry.geometry.lines import (
    Line,
    angle_between_deg,
    intersect,
    inward_normal,
    line_angle_deg,
    line_through,
    order_quad,
    quad_from_lines,
    quad_px_per_mm,
    quad_side_ends,
    signed_distance,
    upright_quad,
)
from cardmetry.geometry.specs import CardSpec

SIDES = ("top", "right", "bottom", "left")
_WORK_SIDE = 600  # the reduced copy's long side, about: 5 to 7 px/mm on a card filling a scan or photo
_COARSE_SPACING_PX = 3.0  # between profiles on the reduced copy: a hundred and more along a side
# A robust line fit's reweighting steps and RANSAC seeds: a coarse line needs fewer than the defaults (20, 256).
_FIT = {"iterations": 6, "ransac_trials": 64}

# The background: a colour is background when it lies near the axis of the margin's colours, between their 2nd
# and 98th percentiles along it, widened by noise (RGB distance); or is such a colour blended towards a light grey
# by up to a fifth, as through a sleeve or a toploader's wall (which lift a dark lid by 15 to 30 grey levels).
_BACKGROUND_NOISE = 10.0
_HAZE_GREY = 210.0
_HAZE_MAX = 0.2
_MARGIN_PX = 4  # the strip along the image's edges (reduced copy) that shows the background
_PADDING_LEVEL = 12.0  # rows and columns darker than this at the image's edges are a scanner's padding

# The outer edge.
_OUTSIDE_MM, _INSIDE_MM = 3.0, 6.0  # the search across a rough side: its looseness, and a sleeve's haze inside it
_STAY_MM = 1.5  # off the background for most of this far inward: a card, not a line
_STAY_SHARE = 0.7
_OUTER_CORNER_MM = 4.0  # the card's 3 mm corner radius and a millimetre for wear
_FINE_OUTSIDE_MM, _FINE_INSIDE_MM = 0.4, 1.0  # the full-resolution window around the line found
_FINE_SPACING_MM = 1.5  # between full-resolution profiles: forty and more along a side
_EDGE_SHARE = 0.6  # the card's edge is the outermost step at least this share of the strongest in that window
_MIN_CONTRAST = 12.0  # grey levels (RGB distance) of the smallest step that counts as an edge
_MIN_SIDE_SHARE = 0.3  # profiles whose edge lies on a side's line, of those sampled
_MIN_COARSE_SHARE = 0.2  # the same on the reduced copy, where the full-resolution pass still checks it
_MAX_CUT_OFF_SHARE = 0.05  # of the outline's length, lying along the image's edge
_MAX_SCAN_ASPECT_ERROR = 0.04  # a flat capture (opposite sides parallel) shows the card's own aspect
_MAX_PHOTO_ASPECT_ERROR = 0.12  # perspective changes it
_PARALLEL_DEG = 1.0  # opposite sides of a flat capture's quad are parallel within this
# One side off the card's edge (a holder's wall, a border as dark as the lid): sought where the aspect puts it.
_RESEARCH_ASPECT = 0.015  # a flat capture's outline further off the spec's aspect than a card's cut explains
_RESEARCH_MM = 1.5  # either side of the predicted edge: the card's cut and the other sides' error
_RESEARCH_CONTRAST = 6.0  # grey levels: a dark grey border on a lid differs by about ten
_RESEARCH_SHARE = 0.6  # of the profiles on one line: only a clear straight edge moves a side
_RESEARCH_TURN_DEG = 0.5  # against the predicted line, parallel to the opposite side

# The graphic edge.
_CLEARANCE_MM = 0.3  # the search starts this far inside the card's edge (its bright cut edge, its shadow)
_REFERENCE_MM = 0.3  # the border's colour comes from this much of each profile
_REACH_MM = 8.0  # borders are at most about 6 mm wide
_GRAPHIC_CORNER_MM = 7.0  # the frame's straight part starts after the border and the frame's corner
_MIN_GRAPHIC_COVERAGE = 0.3  # profiles that find an edge, of those sampled
_MIN_GRAPHIC_AGREEMENT = 0.3  # profiles on the fitted line, of those sampled (a plate may hide more of it)
_MAX_GRAPHIC_TILT_DEG = 3.0  # against the card's edge beside it
_MAX_FRAME_LEAN_DEG = 0.3  # between one side's lean against the card and the frame's (a printed frame is rigid)
_MAX_FINE_TURN_DEG = 0.2  # between the full-resolution line and the coarse one
_GRAPHIC_SIGMA_PX = 1.0  # gradient smoothing on the reduced copy
_TEXTURE_MM, _STEP_MM, _TEXTURE_STEP = 0.6, 0.3, 2.0  # a frame's step is twice the border's own texture
_LEAN_BAND_PX = 4.0  # half the band (full resolution) that holds a side's edge refitted at the frame's lean
_HORIZONTAL, _VERTICAL = np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0])  # the card frame's edge lines
_GRAPHIC_FINE_HALFWIDTH = 1.5  # reduced pixels either side of the coarse line searched at full resolution
# Two straight edges along one side (a name plate's and the frame's): told apart at the frame's corners.
_MIN_PAIR_GAP_MM = 0.6  # closer edges leave too short a stretch of the adjacent side between them to read
_BAND = (0.2, 0.7)  # the stretch of the adjacent side read between the two edges, as shares of the gap from the inner
_SIDE_OFFSETS_MM = (0.3, 0.8)  # the colours either side of the adjacent frame edge, this far from it
_REFERENCE_ALONG_MM = (1.0, 3.0)  # the adjacent edge's own step, read this far inward of the inner edge
_CONTINUES, _STOPS = 0.5, 0.2  # the step in the band as a share of its own: the frame edge runs on, or it ends
# A band lining the frame whose outer step merges with its inner one on the reduced copy in some profiles.
_BAND_MIN_PX, _BAND_MAX_MM = 1.0, 1.0  # its width: reduced pixels apart at least, and at most a millimetre
_BAND_SHARE = 0.15  # of the profiles, finding its outer side
_BAND_OFF_SHARE = 0.8  # of the profiles on the fitted line, off the border's colour halfway across the band


@dataclass(frozen=True, eq=False)
class Reduced:
    """The image averaged over `factor` x `factor` blocks (float RGB), and the map between the two."""

    image: np.ndarray
    factor: int

    @classmethod
    def of(cls, image: np.ndarray) -> Reduced:
        """The reduced copy of an RGB image (grey and RGBA images are taken as their RGB)."""
        height, width = image.shape[:2]
        factor = max(1, round(max(height, width) / _WORK_SIDE))
        rows, cols = height // factor, width // factor
        small = image
        if factor > 1:
            # An exact whole-factor block mean (OpenCV's fast path for INTER_AREA) keeps pixel centres simply mapped.
            small = cv2.resize(image[: rows * factor, : cols * factor], (cols, rows), interpolation=cv2.INTER_AREA)
        small = small.astype(np.float32)
        if small.ndim == 2:
            small = np.repeat(small[..., None], 3, axis=2)
        return cls(np.ascontiguousarray(small[..., :3]), factor)

    def to_full(self, points: np.ndarray) -> np.ndarray:
        """Reduced pixel coordinates to the full image's (pixel centres at integers in both)."""
        return (np.asarray(points, float) + 0.5) * self.factor - 0.5

    def to_reduced(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, float) + 0.5) / self.factor - 0.5


@dataclass(frozen=True, eq=False)
class Background:
    """The background's colours: those along the image's margin, and the same seen through a sleeve's haze.

    The margin's colours lie near one axis (a lid's greys from shadow to sheen, a desk under uneven light): within
    [low, high] along it and `across` off it. A clear sleeve or toploader over the background blends it towards a
    light grey (the sleeve's bright edge lines are thin, and left to the edge search), so the region is swept along
    `haze`, the largest such blend of the margin's median colour: its components along `axis` and along
    `haze_axis`, the unit vector square to `axis` in the plane of the two (zero for a grey background).
    """

    centre: np.ndarray  # (3,) median colour of the margin
    axis: np.ndarray  # (3,) unit vector: the direction the margin's colours vary most (grey for a lid)
    haze_axis: np.ndarray  # (3,)
    low: float  # span along the axis from the centre, RGB distance
    high: float
    across: float  # largest distance off the axis (or off the plane of it and the haze)
    haze_along: float
    haze_across: float

    @classmethod
    def from_margin(cls, image: np.ndarray) -> Background:
        """Learn the background from a strip along the image's edges (inside a scanner's black padding)."""
        top, bottom, left, right = content_box(image)
        inner = image[top:bottom, left:right]
        m = _MARGIN_PX
        strips = [strip.reshape(-1, 3).astype(float) for strip in (inner[:m], inner[-m:], inner[:, :m], inner[:, -m:])]
        # A side that the card runs over (cut off) is not background: leave out a strip unlike the others.
        medians = np.array([np.median(strip, axis=0) for strip in strips])
        typical = np.median(medians, axis=0)
        alike = [strip for strip, median in zip(strips, medians, strict=True) if np.linalg.norm(median - typical) < 40]
        colours = np.concatenate(alike or strips)
        centre = np.median(colours, axis=0)
        deviation = colours - centre
        variances, vectors = np.linalg.eigh(np.cov(deviation.T))
        # A flat background has no direction of its own: light on it still varies along grey.
        axis = vectors[:, -1] if variances[-1] > 4.0 else np.ones(3) / np.sqrt(3)
        axis = axis if axis.sum() >= 0 else -axis  # brighter along the axis
        along = deviation @ axis
        across = np.linalg.norm(deviation - along[:, None] * axis, axis=1)
        low, high = np.percentile(along, [2, 98])
        haze = _HAZE_MAX * (np.full(3, _HAZE_GREY) - centre)
        haze_along = float(haze @ axis)
        haze_square = haze - haze_along * axis
        haze_across = float(np.linalg.norm(haze_square))
        haze_axis = haze_square / haze_across if haze_across > 1.0 else np.zeros(3)
        return cls(
            centre,
            axis,
            haze_axis,
            float(low - _BACKGROUND_NOISE),
            float(high + _BACKGROUND_NOISE),
            float(np.percentile(across, 98) + _BACKGROUND_NOISE),
            haze_along,
            haze_across if haze_across > 1.0 else 0.0,
        )

    def contains(self, colours: np.ndarray) -> np.ndarray:
        """Which colours (..., 3) are background: within the margin's span once some haze in [0, 1] of the full
        blend is taken off them."""
        deviation = colours - self.centre.astype(np.float32)
        along = deviation @ self.axis.astype(np.float32)
        off = deviation @ self.haze_axis.astype(np.float32)
        rest_squared = np.einsum("...i,...i->...", deviation, deviation) - along * along - off * off
        lowest, highest = np.zeros_like(along), np.ones_like(along)
        for value, step, low, high in (
            (along, self.haze_along, self.low, self.high),
            (off, self.haze_across, -self.across, self.across),
        ):
            if abs(step) < 1e-6:
                inside = (value >= low) & (value <= high)
                lowest = np.where(inside, lowest, np.inf)
                continue
            # value - t * step within [low, high]: t between (value - high) / step and (value - low) / step.
            first, second = (value - high) / step, (value - low) / step
            lowest = np.maximum(lowest, np.minimum(first, second))
            highest = np.minimum(highest, np.maximum(first, second))
        return (lowest <= highest) & (rest_squared <= self.across**2)


# The fewest pixels a side of an image to measure may have. A card at any resolution worth measuring spans hundreds;
# an image a few pixels across holds no card, and its background cannot even be modelled.
MIN_IMAGE_SIDE_PX = 32


def too_small(image: np.ndarray) -> str | None:
    """Why an image is too small to measure a card in, or None."""
    height, width = image.shape[:2]
    if min(height, width) >= MIN_IMAGE_SIDE_PX:
        return None
    return f"the image is {width} x {height} px: too small to measure a card (at least {MIN_IMAGE_SIDE_PX} px a side)"


def detect_outer(image: np.ndarray, spec: CardSpec, *, reduced: Reduced | None = None) -> np.ndarray | str:
    """The card's outer quad (OpenCV pixels, upright order), or the reason it cannot be found.

    `reduced` is the image's reduced copy when the caller has it already (`Reduced.of(image)`; the graphic
    border's search uses it too).
    """
    reduced = reduced or Reduced.of(image)
    background = Background.from_margin(reduced.image)
    card = (~background.contains(reduced.image)).astype(np.uint8)
    rough = _rough_quad(card, reduced.image.shape[:2])
    if isinstance(rough, str):
        return rough
    # of the reduced copy: roughly, from a quad that may hold a sleeve
    px_per_mm = quad_px_per_mm(rough, spec.width_mm, spec.height_mm)
    lines = []
    for name, (p0, p1) in quad_side_ends(rough).items():
        inward = inward_normal(p0, p1, rough.mean(axis=0))
        coarse = _coarse_outer_line(card, p0, p1, inward, px_per_mm)
        if isinstance(coarse, str):
            return f"the card's {name} edge was not found: {coarse}"
        lines.append(_line_to_full(coarse, reduced.factor))
    coarse_quad = quad_from_lines(*lines)
    fine = []
    for name, (p0, p1) in quad_side_ends(coarse_quad).items():
        line = _fine_outer_line(image, p0, p1, inward_normal(p0, p1, coarse_quad.mean(axis=0)), spec, coarse_quad)
        if isinstance(line, str):
            return f"the card's {name} edge was not found: {line}"
        fine.append(line)
    fine = _card_shaped_lines(image, fine, spec)
    if isinstance(fine, str):
        return fine
    quad = quad_from_lines(*fine)
    problem = _shape_problem(quad, spec) or _cut_off_problem(quad, image.shape[:2])
    return problem or upright_quad(quad)


def content_box(image: np.ndarray) -> tuple[int, int, int, int]:
    """Rows and columns inside a scanner's black padding along the image's edges: top, bottom, left, right."""
    height, width = image.shape[:2]
    top, bottom, left, right = 0, height, 0, width
    while top < height // 4 and image[top].mean() < _PADDING_LEVEL:
        top += 1
    while bottom > 3 * height // 4 and image[bottom - 1].mean() < _PADDING_LEVEL:
        bottom -= 1
    while left < width // 4 and image[:, left].mean() < _PADDING_LEVEL:
        left += 1
    while right > 3 * width // 4 and image[:, right - 1].mean() < _PADDING_LEVEL:
        right -= 1
    # A pixel more: the padding's edge blends into the image.
    return top + int(top > 0), bottom - int(bottom < height), left + int(left > 0), right - int(right < width)


def _rough_quad(card: np.ndarray, shape: tuple[int, int]) -> np.ndarray | str:
    """The quad around the largest outline of what is not background (1 in `card`), without thin lines."""
    height, width = shape
    opened = cv2.morphologyEx(card, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))
    contours, _ = cv2.findContours(opened, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return "the card does not stand out from the background (nothing differs from the colours along the margin)"
    # The largest outline, not the largest region: a card's border ring can hold less area than a patch of its art.
    outline = max(contours, key=cv2.contourArea)
    if cv2.contourArea(outline) < 0.1 * height * width:
        return "no card found: what differs from the background covers under a tenth of the image"
    points = outline.reshape(-1, 2)
    along_edge = (points[:, 0] <= 0) | (points[:, 1] <= 0) | (points[:, 0] >= width - 1) | (points[:, 1] >= height - 1)
    if np.mean(along_edge) > _MAX_CUT_OFF_SHARE:
        return "the card is cut off by the edge of the image"
    hull = cv2.convexHull(outline).reshape(-1, 2).astype(np.float32)
    return order_quad(cv2.boxPoints(cv2.minAreaRect(hull)))


def _coarse_outer_line(
    card: np.ndarray, p0: np.ndarray, p1: np.ndarray, inward: np.ndarray, px_per_mm: float
) -> Line | str:
    """The card's edge across one rough side (reduced copy): in each profile, the outermost place where the image
    leaves the background and stays off it; a robust line through those places."""
    profiles = sample_profiles(
        card,
        p0,
        p1,
        normal=inward,
        sampling="nearest",
        offset_range=(-_OUTSIDE_MM * px_per_mm, _INSIDE_MM * px_per_mm),
        offset_step=1.0,
        spacing=_COARSE_SPACING_PX,
        margin=_OUTER_CORNER_MM * px_per_mm,
    )
    off_background = np.nan_to_num(profiles.values, nan=0.0) > 0.5
    stay = max(2, round(_STAY_MM * px_per_mm))
    count, length = off_background.shape
    running = np.concatenate([np.zeros((count, 1)), np.cumsum(off_background, axis=1)], axis=1)
    ahead = np.zeros((count, length))
    ahead[:, : length - stay] = (running[:, stay:length] - running[:, : length - stay]) / stay
    start = off_background & (ahead >= _STAY_SHARE)
    found = start.any(axis=1)
    if np.count_nonzero(found) < max(10, _MIN_SIDE_SHARE * count):
        return f"only {np.mean(found):.0%} of profiles leave the background there (too little contrast)"
    points = profiles.points_at(np.where(found, profiles.offsets[np.argmax(start, axis=1)], np.nan))
    # Loosely: a shadow or a sleeve's haze along the edge moves where the background ends by a pixel or two, and
    # the full-resolution pass only needs the line within a few tenths of a millimetre.
    fit = fit_line_robust(points, inlier_threshold_px=1.5, **_FIT)
    if fit.count < _MIN_COARSE_SHARE * count:
        return f"only {fit.count / count:.0%} of profiles agree on a straight edge"
    return fit.line


def _fine_outer_line(
    image: np.ndarray, p0: np.ndarray, p1: np.ndarray, inward: np.ndarray, spec: CardSpec, quad: np.ndarray
) -> Line | str:
    """The card's edge across a coarse line at full resolution: in each profile, the outermost colour step at
    least `_EDGE_SHARE` of the strongest in a narrow window; a robust line through them."""
    px_per_mm = quad_px_per_mm(quad, spec.width_mm, spec.height_mm)
    sigma = 1.0
    search = (-_FINE_OUTSIDE_MM * px_per_mm, _FINE_INSIDE_MM * px_per_mm)
    profiles = _card_edge_profiles(image, p0, p1, inward, search, sigma, px_per_mm)
    hits = locate_edges(
        profiles.values,
        profiles.offsets,
        select="first",
        sigma_px=sigma,
        min_snr=3.0,
        min_gradient=step_gradient_peak(_MIN_CONTRAST, sigma),
        search_range=search,
        min_share_of_strongest=_EDGE_SHARE,
    )
    count = len(hits.offsets)
    if np.count_nonzero(hits.found) < max(10, _MIN_SIDE_SHARE * count):
        return f"a colour step in only {np.mean(hits.found):.0%} of profiles at full resolution"
    fit = fit_line_robust(profiles.points_at(hits.offsets), inlier_threshold_px=1.5, **_FIT)
    if fit.count < _MIN_SIDE_SHARE * count:
        return f"only {fit.count / count:.0%} of profiles agree on a straight edge at full resolution"
    return fit.line


def _aspect_error(quad: np.ndarray, spec: CardSpec) -> float:
    """How far the quad's aspect (long over short, sides averaged) is from the spec's, as a share of it."""
    sides = np.linalg.norm(quad - np.roll(quad, -1, axis=0), axis=1)
    across, down = sides[0] + sides[2], sides[1] + sides[3]
    return float(max(across, down) / min(across, down) / spec.aspect - 1)


def _is_flat(quad: np.ndarray) -> bool:
    """Whether opposite sides are parallel, as in a scan (a photo's perspective turns them)."""
    edges = [line_through(p, q) for p, q in quad_side_ends(quad).values()]
    return max(angle_between_deg(edges[0], edges[2]), angle_between_deg(edges[1], edges[3])) < _PARALLEL_DEG


def _card_shaped_lines(image: np.ndarray, lines: list[Line], spec: CardSpec) -> list[Line] | str:
    """The four outer lines (top, right, bottom, left), one of them moved where the card's aspect puts it when the
    outline is clearly not card-shaped and exactly one side shows a clear straight edge there.

    One wrong side is the usual failure on a scan: a sleeve's or toploader's wall taken for the card's edge (the
    dark lid between them is not the margin's colour), or a dark border as dark as the lid passed over for the art
    inside it. The other three sides and the card's aspect predict where that side's edge is. Where more than one
    side could be moved so, the capture cannot tell which is wrong, and the card is refused.
    """
    quad = quad_from_lines(*lines)
    if not np.all(np.isfinite(quad)) or not _is_flat(quad) or abs(_aspect_error(quad, spec)) <= _RESEARCH_ASPECT:
        return lines
    moved = []
    for index in range(4):
        line = _clear_edge_at(image, lines, index, spec)
        if line is not None:
            candidate = [*lines[:index], line, *lines[index + 1 :]]
            moved.append((abs(_aspect_error(quad_from_lines(*candidate), spec)), candidate))
    moved = [candidate for error, candidate in moved if error <= _RESEARCH_ASPECT]
    # A holder's wall beyond the opposite side, or the art's edge inside it, can lie where a wrong side predicts
    # the card's edge too: then the capture cannot tell which side is off.
    if len(moved) > 1:
        return "the outline found is not card-shaped, and more than one side could be the one off the card's edge"
    return moved[0] if moved else lines


def _card_edge_profiles(
    image: np.ndarray,
    p0: np.ndarray,
    p1: np.ndarray,
    inward: np.ndarray,
    search: tuple[float, float],
    sigma: float,
    px_per_mm: float,
) -> Profiles:
    """Full-resolution profiles across a card edge between p0 and p1, off its rounded corners, reaching past the
    search range by what a derivative-of-Gaussian of `sigma` needs at its ends."""
    spacing = max(2.0, _FINE_SPACING_MM * px_per_mm)
    return edge_profiles(image, p0, p1, inward, search, sigma_px=sigma, spacing=spacing,
                         margin=_OUTER_CORNER_MM * px_per_mm)


def _clear_edge_at(image: np.ndarray, lines: list[Line], index: int, spec: CardSpec) -> Line | None:
    """A clear straight edge (full resolution) near where the card's aspect puts side `index` from the other
    three sides, or None."""
    quad = quad_from_lines(*lines)
    centre = quad.mean(axis=0)
    opposite = _inside_positive(lines[(index + 2) % 4], inward_normal(*_ends(quad, (index + 2) % 4), centre))
    ours, across = _separation(quad, index), _separation(quad, index + 1)
    expected = across * spec.aspect if ours > across else across / spec.aspect
    predicted = opposite - np.array([0.0, 0.0, expected])  # points on our side lie at +expected from `opposite`
    p0, p1 = (intersect(predicted, lines[(index + k) % 4]) for k in (3, 1))
    px_per_mm = quad_px_per_mm(quad, spec.width_mm, spec.height_mm)
    reach = _RESEARCH_MM * px_per_mm
    sigma = 1.0
    profiles = _card_edge_profiles(image, p0, p1, inward_normal(p0, p1, centre), (-reach, reach), sigma, px_per_mm)
    hits = locate_edges(
        profiles.values,
        profiles.offsets,
        sigma_px=sigma,
        min_snr=3.0,
        min_gradient=step_gradient_peak(_RESEARCH_CONTRAST, sigma),
        search_range=(-reach, reach),
    )
    count = len(hits.offsets)
    if count < 10 or np.count_nonzero(hits.found) < _RESEARCH_SHARE * count:
        return None
    fit = fit_line_robust(profiles.points_at(hits.offsets), inlier_threshold_px=1.5, **_FIT)
    if fit.count < _RESEARCH_SHARE * count or angle_between_deg(fit.line, predicted) > _RESEARCH_TURN_DEG:
        return None
    return fit.line


def _ends(quad: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Side `index`'s two corners (top, right, bottom, left)."""
    return quad[index], quad[(index + 1) % 4]


def _separation(quad: np.ndarray, index: int) -> float:
    """The distance between side `index` and the opposite side, between their midpoints."""
    a0, a1 = _ends(quad, index % 4)
    b0, b1 = _ends(quad, (index + 2) % 4)
    return float(np.linalg.norm((a0 + a1) / 2 - (b0 + b1) / 2))


def _shape_problem(quad: np.ndarray, spec: CardSpec) -> str | None:
    """Why the quad found is not a card's outline, or None."""
    if not np.all(np.isfinite(quad)):
        return "the edges found do not meet in a card-shaped outline"
    sides = np.linalg.norm(quad - np.roll(quad, -1, axis=0), axis=1)
    across, down = sides[0] + sides[2], sides[1] + sides[3]
    aspect = max(across, down) / min(across, down)
    edges = [line_through(p, q) for p, q in quad_side_ends(quad).values()]
    flat = max(angle_between_deg(edges[0], edges[2]), angle_between_deg(edges[1], edges[3])) < _PARALLEL_DEG
    tolerance = _MAX_SCAN_ASPECT_ERROR if flat else _MAX_PHOTO_ASPECT_ERROR
    if abs(aspect / spec.aspect - 1) > tolerance:
        return (
            f"the outline found is not card-shaped (aspect {aspect:.2f}, a {spec.name} card is {spec.aspect:.2f}): "
            "an edge may not stand out from the background"
        )
    return None


def _cut_off_problem(quad: np.ndarray, shape: tuple[int, ...]) -> str | None:
    height, width = shape[:2]
    if np.any(quad < 0) or np.any(quad[:, 0] > width - 1) or np.any(quad[:, 1] > height - 1):
        return "the card is cut off by the edge of the image"
    return None


def detect_graphic(
    image: np.ndarray, outer_quad: np.ndarray, spec: CardSpec, *, reduced: Reduced | None = None
) -> np.ndarray | str:
    """The graphic quad inside a card's outer quad (OpenCV pixels, same corner order), or the reason it cannot be
    found: on each side, the first step inward from the border's colour. `reduced` as for `detect_outer`."""
    reduced = reduced or Reduced.of(image)
    outer = np.asarray(outer_quad, float)
    px_per_mm = quad_px_per_mm(outer, spec.width_mm, spec.height_mm)
    sides = {}
    for name, (p0, p1) in quad_side_ends(outer).items():
        side = _coarse_frame_side(reduced, p0, p1, inward_normal(p0, p1, outer.mean(axis=0)), px_per_mm)
        if isinstance(side, str):
            return f"no graphic border found along the {name} side: {side}"
        sides[name] = side
    for name, side in sides.items():
        if len(side.lines) == 2:
            resolved = _resolve_pair(reduced, side, [sides[other] for other in _ADJACENT[name]], px_per_mm)
            if isinstance(resolved, str):
                return f"no graphic border found along the {name} side: {resolved}"
            sides[name] = resolved
    lines = {}
    for name, line in _rigid_frame(sides, outer).items():
        if isinstance(line, str):
            return f"the graphic border found along the {name} side {line}"
        side = sides[name]
        lines[name] = _fine_graphic_line(image, line, side.p0, side.p1, side.inward, px_per_mm, reduced.factor)
    return quad_from_lines(*(lines[name] for name in SIDES))


_ADJACENT = {
    "top": ("left", "right"),
    "bottom": ("left", "right"),
    "left": ("top", "bottom"),
    "right": ("top", "bottom"),
}


@dataclass(frozen=True, eq=False)
class _FrameSide:
    """The frame's edge found along one card edge on the reduced copy, in full-image coordinates: one line, or two
    (the outer one first) where the side alone does not tell which is the frame's."""

    p0: np.ndarray  # the card edge's ends
    p1: np.ndarray
    inward: np.ndarray
    lines: tuple[Line, ...]
    counts: tuple[int, ...]  # points on each line
    points: np.ndarray  # the edge found in each profile, NaN where none

    @property
    def line(self) -> Line:
        return self.lines[0]

    @property
    def count(self) -> int:
        return self.counts[0]


def _coarse_frame_side(
    reduced: Reduced, p0: np.ndarray, p1: np.ndarray, inward: np.ndarray, px_per_mm_full: float
) -> _FrameSide | str:
    """The frame's edge along one card edge, found on the reduced copy."""
    px_per_mm = px_per_mm_full / reduced.factor
    q0, q1 = reduced.to_reduced(p0), reduced.to_reduced(p1)
    sigma = _GRAPHIC_SIGMA_PX
    profiles = sample_profiles(
        reduced.image,
        q0,
        q1,
        normal=inward,
        sampling="remap",
        offset_range=(0.0, _REACH_MM * px_per_mm),
        offset_step=0.5,
        spacing=_COARSE_SPACING_PX,
        margin=_GRAPHIC_CORNER_MM * px_per_mm,
    )
    begin = _CLEARANCE_MM * px_per_mm
    distance, hits = first_edge_from_border(
        profiles,
        np.full(len(profiles.origins), begin),
        _REFERENCE_MM * px_per_mm,
        _REACH_MM * px_per_mm,
        sigma_px=sigma,
        min_snr=4.0,
        min_gradient=step_gradient_peak(_MIN_CONTRAST, sigma),
    )
    hits = _clear_of_texture(hits, distance, profiles.offsets, begin, px_per_mm)
    count = len(hits.offsets)
    if count < 10 or np.mean(hits.found) < _MIN_GRAPHIC_COVERAGE:
        return f"a step off the border's colour in only {np.mean(hits.found):.0%} of profiles (the art is like it)"
    points = profiles.points_at(hits.offsets)
    rule = _two_edge_rule(px_per_mm, _COARSE_SPACING_PX)
    fit = frame_edge_or_pair(points, inward, 1.0, rule, **_FIT)
    # Two edges along different stretches of the side share it: together they must cover as much as one would.
    fits = fit if isinstance(fit, tuple) else (fit,)
    agreeing = sum(one.count for one in fits)
    if agreeing < _MIN_GRAPHIC_AGREEMENT * count:
        return f"no straight edge: only {agreeing / count:.0%} of the profiles agree on one"
    if any(angle_between_deg(one.line, line_through(q0, q1)) > _MAX_GRAPHIC_TILT_DEG for one in fits):
        return "the edge found is not parallel to the card's edge"
    # The outer line first: the one nearer the card's edge.
    card_edge = _inside_positive(line_through(q0, q1), inward)
    fits = tuple(sorted(fits, key=lambda one: float(np.nanmedian(signed_distance(card_edge, points[one.inliers])))))
    lines, counts = [one.line for one in fits], [one.count for one in fits]
    if len(fits) == 1:
        texture = _texture(distance, profiles.offsets, begin, px_per_mm)
        lines[0], counts[0], points = _band_outside(fits[0], points, distance, profiles, inward, texture, px_per_mm)
    full = tuple(_line_to_full(line, reduced.factor) for line in lines)
    return _FrameSide(p0, p1, inward, full, tuple(counts), reduced.to_full(points))


def _band_outside(
    fit: LineFit,
    points: np.ndarray,
    distance: np.ndarray,
    profiles: Profiles,
    inward: np.ndarray,
    texture: float,
    px_per_mm: float,
) -> tuple[Line, int, np.ndarray]:
    """The fitted edge, or the outer side of a narrow band of colour that lies just outside it, with the points.

    A band lining the frame (a few reduced pixels wide) is a step off the border's colour and then a second one;
    smoothed on the reduced copy the two steps merge in some profiles, whose first edge then lands on the band's
    inner side. The frame's edge is the first one inward from the border's colour, so where a share of the profiles
    find a parallel edge just outside the fitted one and the colour between the two is off the border's in most
    profiles (a band, not a dotted line in the border), the profiles on the fitted line are moved onto the band's
    outer side too.
    """
    line = _inside_positive(fit.line, inward)
    residual = signed_distance(line, points)
    outside = residual[(residual <= -_BAND_MIN_PX) & (residual >= -_BAND_MAX_MM * px_per_mm)]
    band = _densest(outside, half_band=1.0)
    if band is None or band[1] < max(5, _BAND_SHARE * len(points)):
        return fit.line, fit.count, points
    gap = band[0]  # negative: outside the fitted line
    # The colour halfway between the two edges, in each profile on the fitted line.
    rows = np.flatnonzero(fit.inliers)
    found = (points[rows] - profiles.origins[rows]) @ profiles.normal
    step = profiles.offsets[1] - profiles.offsets[0]
    columns = np.round((found + gap / 2 - profiles.offsets[0]) / step).astype(int)
    columns = np.clip(columns, 0, len(profiles.offsets) - 1)
    off_border = distance[rows, columns] >= max(_MIN_CONTRAST, _TEXTURE_STEP * texture)
    if np.mean(off_border) < _BAND_OFF_SHARE:
        return fit.line, fit.count, points
    shifted = line - np.array([0.0, 0.0, gap * float(line[:2] @ inward)])
    moved = np.where(fit.inliers[:, None], points + gap * inward, points)
    on_band = np.abs(signed_distance(shifted, moved)) <= 1.0
    return shifted, int(np.count_nonzero(on_band)), moved


def _resolve_pair(
    reduced: Reduced, side: _FrameSide, adjacent: list[_FrameSide], px_per_mm_full: float
) -> _FrameSide | str:
    """The side with the one of its two edges that the frame's corners tell is the frame's, or why they do not.

    A printed frame's edge ends where it meets the adjacent sides of the frame; a name plate's edge ends wherever
    the plate does. So where the adjacent side's frame edge ends tells: read between the two edges, it still
    divides the border from the art if the outer edge is the frame's, and has border on both sides if the inner
    one is. A plate that reaches a corner hides it (the border's colour is not there): the other corner decides.
    """
    px_per_mm = px_per_mm_full / reduced.factor
    outer, inner = (_line_to_reduced(line, reduced.factor) for line in side.lines)
    middle = reduced.to_reduced((side.p0 + side.p1) / 2)
    gap_px = abs(float(signed_distance(outer, _project(inner, middle))))
    verdicts = set()
    if gap_px >= _MIN_PAIR_GAP_MM * px_per_mm:
        for other in adjacent:
            if len(other.lines) == 1:
                verdicts.add(_corner_verdict(reduced, outer, inner, other, px_per_mm))
    verdicts.discard(None)
    if len(verdicts) != 1:
        return (
            f"two straight edges {gap_px:.1f} px apart along different stretches, and the frame's corners do not "
            "tell which is the frame's: a name plate or a second frame line?"
        )
    kept = 0 if verdicts == {"outer"} else 1
    return replace(side, lines=(side.lines[kept],), counts=(side.counts[kept],))


def _corner_verdict(reduced: Reduced, outer: Line, inner: Line, adjacent: _FrameSide, px_per_mm: float) -> str | None:
    """Which of two edges (reduced coordinates) the adjacent side's frame edge runs to: "outer", "inner", or None
    where it cannot be read (too faint, or something other than the border lies outside it there)."""
    edge = _inside_positive(_line_to_reduced(adjacent.line, reduced.factor), adjacent.inward)
    to_outer, to_inner = intersect(edge, outer), intersect(edge, inner)
    if not (np.all(np.isfinite(to_outer)) and np.all(np.isfinite(to_inner))):
        return None
    gap = float(np.linalg.norm(to_outer - to_inner))
    along = (to_outer - to_inner) / gap  # along the adjacent edge, towards the card's edge
    band = _colours_either_side(
        reduced, edge, to_inner + along * gap * _BAND[0], to_inner + along * gap * _BAND[1], px_per_mm
    )
    start, stop = (to_inner - along * mm * px_per_mm for mm in _REFERENCE_ALONG_MM)
    reference = _colours_either_side(reduced, edge, start, stop, px_per_mm)
    if band is None or reference is None:
        return None
    own_step = float(np.median(np.linalg.norm(reference[1] - reference[0], axis=1)))
    band_step = float(np.median(np.linalg.norm(band[1] - band[0], axis=1)))
    border_shift = float(np.linalg.norm(np.median(band[0], axis=0) - np.median(reference[0], axis=0)))
    if own_step < _MIN_CONTRAST or border_shift > max(_MIN_CONTRAST, _STOPS * own_step):
        return None
    if band_step >= _CONTINUES * own_step:
        return "outer"
    if band_step <= _STOPS * own_step:
        return "inner"
    return None


def _colours_either_side(
    reduced: Reduced, edge: Line, start: np.ndarray, stop: np.ndarray, px_per_mm: float
) -> tuple[np.ndarray, np.ndarray] | None:
    """The mean colours just outside and just inside a frame edge (inside-positive line, reduced coordinates), at
    each pixel along it from `start` to `stop`; None where that stretch has under three pixels or leaves the image."""
    near, far = (mm * px_per_mm for mm in _SIDE_OFFSETS_MM)
    a, b = _project(edge, start), _project(edge, stop)
    profiles = sample_profiles(
        reduced.image,
        a,
        b,
        normal=edge[:2],
        sampling="remap",
        offset_range=(-far, far),
        offset_step=0.5,
        spacing=1.0,
        margin=0.0,
    )
    if len(profiles.origins) < 3 or np.isnan(profiles.values).any():
        return None
    outside = profiles.values[:, profiles.offsets <= -near].mean(axis=1)
    inside = profiles.values[:, profiles.offsets >= near].mean(axis=1)
    return outside, inside


def _clear_of_texture(
    hits: EdgeHits, distance: np.ndarray, offsets: np.ndarray, begin: float, px_per_mm: float
) -> EdgeHits:
    """The edges whose step off the border's colour clearly exceeds the border's own texture (a halftone's dots, a
    printed pattern), which otherwise gives an edge at every dot.

    The texture is how far the border's first `_TEXTURE_MM` strays from its colour (the 90th percentile of the
    distance, typical over the side); a step is the median distance over `_STEP_MM` after the edge.
    """
    step_px = float(offsets[1] - offsets[0])
    texture = _texture(distance, offsets, begin, px_per_mm)
    reach = max(1, round(_STEP_MM * px_per_mm / step_px))
    first = np.floor((np.nan_to_num(hits.offsets, nan=offsets[0]) - offsets[0]) / step_px).astype(int) + 1
    columns = np.clip(first[:, None] + np.arange(reach), 0, len(offsets) - 1)
    step = np.median(distance[np.arange(len(first))[:, None], columns], axis=1)
    faint = ~(step >= _TEXTURE_STEP * texture)
    return replace(hits, offsets=np.where(faint, np.nan, hits.offsets))


def _texture(distance: np.ndarray, offsets: np.ndarray, begin: float, px_per_mm: float) -> float:
    """How far the border's first `_TEXTURE_MM` strays from its colour: the 90th percentile of the distance,
    typical over the side."""
    stretch = (offsets >= begin) & (offsets <= begin + _TEXTURE_MM * px_per_mm)
    return float(np.nanmedian(np.percentile(distance[:, stretch], 90, axis=1)))


def _densest(values: np.ndarray, half_band: float) -> tuple[float, int] | None:
    """The centre of the densest band (2 `half_band` wide, its centre tried in half-pixel steps) of some values,
    the median of those in it, and how many it holds; None for fewer than two values."""
    if len(values) < 2:
        return None
    centres = np.arange(np.floor(values.min()), np.ceil(values.max()) + 1.0, 0.5)
    ordered = np.sort(values)
    counts = np.searchsorted(ordered, centres + half_band, "right") - np.searchsorted(ordered, centres - half_band)
    centre = centres[int(np.argmax(counts))]
    band = values[np.abs(values - centre) <= half_band]
    return float(np.median(band)), len(band)


def _rigid_frame(sides: dict[str, _FrameSide], outer: np.ndarray) -> dict[str, Line | str]:
    """The sides' lines, a side that leans otherwise than the opposite one refitted at the opposite one's lean.

    A printed frame is a rigid rectangle: turned on the card by a miscut, its top and bottom lean alike against the
    card's edges, as do its left and right. The leans are compared in the card's own frame (the outer quad mapped
    onto a rectangle), where a photo's perspective no longer turns one side against the other. Of two opposite
    sides that disagree, the one nearer the other pair's lean is kept, or the one with more points on its line;
    the other was pulled by art along it, and its edge is sought again among its points at the kept one's lean.
    """
    sides_px = np.linalg.norm(outer - np.roll(outer, -1, axis=0), axis=1)
    width, height = (sides_px[0] + sides_px[2]) / 2, (sides_px[1] + sides_px[3]) / 2
    to_card = homography_from_points(outer, np.array([[0.0, 0.0], [width, 0.0], [width, height], [0.0, height]]))
    axes = {"top": _HORIZONTAL, "bottom": _HORIZONTAL, "left": _VERTICAL, "right": _VERTICAL}
    leans = {name: _signed_angle_deg(transform_line(to_card, side.line), axes[name]) for name, side in sides.items()}
    lines: dict[str, Line | str] = {name: side.line for name, side in sides.items()}
    for pair, other in ((("top", "bottom"), ("left", "right")), (("left", "right"), ("top", "bottom"))):
        first, second = pair
        if abs(leans[first] - leans[second]) <= _MAX_FRAME_LEAN_DEG:
            continue
        if abs(leans[other[0]] - leans[other[1]]) <= _MAX_FRAME_LEAN_DEG:
            frame_lean = (leans[other[0]] + leans[other[1]]) / 2
            kept = min(pair, key=lambda name: abs(leans[name] - frame_lean))
        else:
            kept = max(pair, key=lambda name: sides[name].count)
        refit = second if kept == first else first
        points = sides[refit].points
        found = np.count_nonzero(~np.isnan(points[:, 0]))
        on_card = apply_homography(to_card, points)
        line = _line_at_lean(on_card, axes[refit], leans[kept], half_band=_LEAN_BAND_PX)
        if line is None or line[1] < _MIN_GRAPHIC_AGREEMENT * found:
            lines[refit] = f"leans {leans[refit] - leans[kept]:+.1f} degrees against the opposite side of the frame"
        else:
            lines[refit] = transform_line(np.linalg.inv(to_card), line[0])
    return lines


def _line_at_lean(
    points: np.ndarray, card_edge: Line, lean_deg: float, half_band: float = 1.0
) -> tuple[Line, int] | None:
    """The line at `lean_deg` to the card's edge through the densest band (2 `half_band` wide) of the points, and
    how many points it holds."""
    angle = np.radians(lean_deg)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    normal = rotation @ card_edge[:2]
    densest = _densest(points[~np.isnan(points[:, 0])] @ normal, half_band)
    if densest is None:
        return None
    return np.array([normal[0], normal[1], -densest[0]]), densest[1]


def _fine_graphic_line(
    image: np.ndarray,
    coarse: Line,
    p0: np.ndarray,
    p1: np.ndarray,
    inward: np.ndarray,
    px_per_mm: float,
    factor: int,
) -> Line:
    """The frame's edge relocated at full resolution within a few pixels of the coarse line (the coarse line
    where too few profiles find it)."""
    if factor == 1:
        return coarse
    sigma = 1.0
    half = _GRAPHIC_FINE_HALFWIDTH * factor
    reference = _REFERENCE_MM * px_per_mm
    a0, a1 = _project(coarse, p0), _project(coarse, p1)
    direction = inward if coarse[:2] @ inward > 0 else -inward
    profiles = sample_profiles(
        image,
        a0,
        a1,
        normal=direction,
        sampling="remap",
        offset_range=(-half - reference - 3.5 * sigma, half + 3.5 * sigma),
        offset_step=0.5,
        spacing=max(2.0, _FINE_SPACING_MM * px_per_mm),
        margin=_GRAPHIC_CORNER_MM * px_per_mm,
    )
    # The border's colour comes from just outside the window, but never nearer the card's edge than the clearance.
    outer = _inside_positive(line_through(p0, p1), inward)
    card_edge = -signed_distance(outer, profiles.origins) / (outer[:2] @ direction)
    begin = np.maximum(-half - reference, card_edge + _CLEARANCE_MM * px_per_mm)
    _, hits = first_edge_from_border(
        profiles,
        begin,
        reference,
        half,
        sigma_px=sigma,
        min_snr=4.0,
        min_gradient=step_gradient_peak(_MIN_CONTRAST, sigma),
    )
    found = np.count_nonzero(hits.found)
    if found < max(10, _MIN_GRAPHIC_COVERAGE * len(hits.offsets)):
        return coarse
    points = profiles.points_at(hits.offsets)
    fit = fit_line_robust(points, inlier_threshold_px=1.5, **_FIT)
    if fit.count >= _MIN_GRAPHIC_AGREEMENT * found and angle_between_deg(fit.line, coarse) <= _MAX_FINE_TURN_DEG:
        return fit.line
    # Turned by art along part of the side, in so narrow a window: parallel to the coarse line instead, whose
    # direction comes from the whole side.
    line = _line_at_lean(points, coarse, 0.0, half_band=1.5)
    if line is None or line[1] < _MIN_GRAPHIC_AGREEMENT * found:
        return coarse
    return line[0]


def _two_edge_rule(px_per_mm: float, spacing_px: float) -> TwoEdgeRule:
    """Box refinement's defaults for a second straight edge along a frame's side (see cardmetry.data.refine)."""
    return TwoEdgeRule(
        min_share=0.15,
        max_angle_deg=1.5,
        min_gap_px=1.0,
        max_mix=0.1,
        min_continuity=0.8,
        overhang_profiles=max(2, round(1.0 * px_per_mm / spacing_px)),
        max_rms_px=1.4,
    )




def _line_to_full(line: Line, factor: int) -> Line:
    """A line in reduced coordinates in the full image's (x_full = (x + 0.5) * factor - 0.5)."""
    a, b, c = line
    return np.array([a, b, c * factor + (a + b) * (0.5 - 0.5 * factor)])


def _line_to_reduced(line: Line, factor: int) -> Line:
    """A line in the full image's coordinates in reduced ones (the inverse of `_line_to_full`)."""
    a, b, c = line
    return np.array([a, b, (c + (a + b) * (0.5 * factor - 0.5)) / factor])


def _signed_angle_deg(line: Line, reference: Line) -> float:
    """The angle turning `reference` onto `line`, in (-90, 90] degrees."""
    return float((line_angle_deg(line) - line_angle_deg(reference) + 90) % 180 - 90)


def _inside_positive(line: Line, inward: np.ndarray) -> Line:
    """The line with its normal turned towards `inward`, so that points inside lie at positive distances."""
    return line if line[:2] @ inward > 0 else -line


def _project(line: Line, point: np.ndarray) -> np.ndarray:
    """The foot of the perpendicular from a point to a line."""
    return np.asarray(point, float) - signed_distance(line, point) * line[:2]

