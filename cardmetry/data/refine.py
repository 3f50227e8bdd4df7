"""Box-to-polygon refinement: turn an axis-aligned box label into the tight quad of the edges it surrounds.

Each side of the box is refined on its own, from the image alone: profiles across the side, a step edge in
each, a robust straight line through the edge points; the four lines are then intersected.

- outer: the edge is the outermost colour step nearly as strong as the strongest across the profile (a
  sleeve edge, a shadow or the lid's texture is a smaller step than the card against its background, while
  the two sides of a card's bright cut edge are alike and the outer one is the card's outline);
- graphic: the reference is the card's border colour, taken at the outer end of each profile (between the
  refined card edge and the box side); the edge is the first place going inward where the colour leaves it
  (art that crosses the frame gives points off the line, which the robust fit rejects). A graphic side may
  hold a second straight edge along part of it: a name plate printed across the frame, whose edge lies in the
  border, or a band of the frame found where the band outside it is too faint. The fit then lies on one of
  the two, never between them, and the side is refused unless one of them runs on past the other at both
  ends (the frame around a plate), since a plate may cover more of a side than the frame shows. Both the
  first-edge search and this two-edge rule are `cardmetry.geometry.frame`'s, shared with the classical detector.

A coarse pass searches from a few tenths of a millimetre outside to 1.5 mm inside the box side; two fine passes
resample square to the line found so far in a narrow window, so an edge tilted out of the coarse window along
part of the side is still followed to its end. A side that cannot be fitted confidently is refused with
a reason, never guessed.

Coordinates: boxes and the returned quad use the label convention (pixel edge at 0); all image sampling uses
OpenCV's (pixel centre at 0), converted here at the boundary only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from cardmetry.data.images import ImageError, load_image
from cardmetry.data.instances import GRAPHIC, OUTER, Dataset, Instance, LabeledImage, cv_to_label, label_to_cv
from cardmetry.data.problems import Problem
from cardmetry.geometry.edges import (
    EdgeHits,
    LineFit,
    Profiles,
    fit_line_robust,
    locate_edges,
    sample_profiles,
    step_gradient_peak,
)
from cardmetry.geometry.frame import TwoEdgeRule, first_edge_from_border, fit_frame_edge
from cardmetry.geometry.lines import (
    Line,
    angle_between_deg,
    line_angle_deg,
    line_through,
    quad_from_lines,
    quad_side_ends,
    signed_distance,
)
from cardmetry.geometry.specs import STANDARD, CardSpec

Role = Literal["outer", "graphic"]
SIDES: tuple[str, ...] = ("top", "right", "bottom", "left")
ROLE_OF_CLASS: dict[int, Role] = {OUTER: "outer", GRAPHIC: "graphic"}


@dataclass(frozen=True)
class RoleLimits:
    """Where to search and how sure to be, for one role."""

    outward_mm: float  # search this far outside the box side
    corner_margin_mm: float  # keep profiles this far from the box's corners
    min_inlier_share: float  # share of a side's profiles whose edge must lie on the fitted line
    max_rms_px: float  # RMS distance of the inliers from the line


def _outer_limits() -> RoleLimits:
    # A box can cut into a tilted card; the rounded corners have a 3 mm radius; worn or frayed card edges
    # scatter more than printed ones.
    return RoleLimits(outward_mm=0.5, corner_margin_mm=4.0, min_inlier_share=0.5, max_rms_px=1.5)


def _graphic_limits() -> RoleLimits:
    # A graphic box side sits in the border near the frame; frames may have rounded or overprinted corners,
    # and art, names and logos often cover much of a side, so a smaller share of it may carry the edge.
    return RoleLimits(outward_mm=0.25, corner_margin_mm=3.0, min_inlier_share=0.3, max_rms_px=1.4)


@dataclass(frozen=True)
class RefineOptions:
    """How far to search and how sure to be. Lengths in mm become pixels through px_per_mm."""

    outer: RoleLimits = field(default_factory=_outer_limits)
    graphic: RoleLimits = field(default_factory=_graphic_limits)
    inward_mm: float = 1.5  # search inside the side: the box's looseness plus the run-out of a tilted edge
    graphic_clearance_mm: float = 0.3  # a graphic search starts this far inside the refined outer edge
    # The outer edge is the outermost colour step at least this share of the strongest: the outside of a
    # card's bright cut edge rather than its inside, but not a fainter sleeve edge or shadow before it.
    outer_edge_share: float = 0.75
    reference_mm: float = 0.2  # length of profile that gives the border colour for a graphic edge
    fine_halfwidth_px: float = 3.0  # the fine passes search this far either side of the line found so far
    spacing_px: float = 1.0  # between profiles along a side
    offset_step_px: float = 0.5  # between samples along a profile
    sigma_px: float = 1.2  # gradient smoothing to find edges (see cardmetry.geometry.edges.smoothed_gradient)
    # Less smoothing to place them in the fine passes: an edge's gradient lobe then overlaps less with that of a
    # thin printed rule's far side, which pushes it outward (on synthetic 2 px rules: up to 0.56 px at 1.2, 0.33
    # px at 0.8).
    fine_sigma_px: float = 0.8
    min_snr: float = 6.0  # edge gradient over the profile's gradient noise
    min_contrast: float = 12.0  # smallest colour step (grey levels, RGB distance) that counts as an edge
    min_coverage: float = 0.3  # share of a side's profiles that must find an edge
    min_coarse_coverage: float = 0.1  # the coarse pass may reach a tilted edge along only part of the side
    max_tilt_deg: float = 3.0  # angle between a refined side and its box side
    max_frame_skew_deg: float = 1.5  # angle between a refined graphic side and the outer side beside it
    max_frame_parallel_deg: float = 0.3  # difference of opposite graphic sides' angles against the card's
    max_aspect_error: float = 0.03  # relative difference of an outer quad's aspect from the card spec's
    # A box is about as loose across as down; beyond this the sides disagree and one found another edge.
    max_looseness_mismatch_mm: float = 0.6
    max_corner_outside_mm: float = 1.0  # how far a refined corner may lie outside its box
    # A second straight edge along part of a graphic side (a name plate's, another frame band's) competes with the
    # fitted one when (see _parallel_rival and _frame_line_of_two):
    min_rival_share: float = 0.15  # it holds this share of the side's profiles,
    max_rival_angle_deg: float = 1.5  # runs within this angle of the fitted edge,
    min_rival_gap_px: float = 1.0  # lies at least this far from it,
    max_rival_mix: float = 0.1  # along a stretch where at most this share of the profiles find the other edge,
    min_rival_continuity: float = 0.8  # and, inside the fitted edge, is reached in this share of its stretch.
    rival_overhang_mm: float = 1.0  # the frame's edge runs on past a plate's by at least this at both ends

    def limits(self, role: Role) -> RoleLimits:
        return self.outer if role == "outer" else self.graphic


@dataclass(frozen=True, eq=False)
class SideFit:
    """The refinement of one box side. `line` (OpenCV convention, inside positive) is None when refused."""

    side: str
    line: Line | None
    rms_px: float
    inlier_share: float  # inliers over profiles sampled
    coverage: float  # profiles with an edge over profiles sampled
    shift_px: float  # mean distance from the box side to the refined line, positive inward
    within_1px: float = 0.0  # profiles whose edge lies within 1 px of the line over profiles sampled
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


@dataclass(frozen=True, eq=False)
class RefinedQuad:
    """A refined box: the quad (label convention, TL TR BR BL) when `ok`, and per-side fit figures."""

    role: Role
    box: Instance
    quad: np.ndarray | None
    sides: dict[str, SideFit]
    px_per_mm: float
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None

    @property
    def rms_px(self) -> dict[str, float]:
        return {name: fit.rms_px for name, fit in self.sides.items()}

    @property
    def inlier_share(self) -> dict[str, float]:
        return {name: fit.inlier_share for name, fit in self.sides.items()}

    @property
    def shift_px(self) -> dict[str, float]:
        return {name: fit.shift_px for name, fit in self.sides.items()}

    def instance(self) -> Instance:
        """The refined polygon as an Instance of the box's class."""
        if self.quad is None:
            raise ValueError(f"no refined quad: {self.reason}")
        return Instance(self.box.class_id, self.quad)


@dataclass(frozen=True, eq=False)
class RefinementRefusal:
    """A box that was not refined, why, and the attempt (when there was one) for inspection."""

    instance: Instance
    reason: str
    attempt: RefinedQuad | None = None


def estimate_px_per_mm(outline: Instance, spec: CardSpec = STANDARD) -> float:
    """Scale from a card's outer box or quad and the card's size, whichever way round the card lies."""
    x0, y0, x1, y1 = outline.bbox
    short, long = sorted((x1 - x0, y1 - y0))
    return float((short / spec.width_mm + long / spec.height_mm) / 2)


def refine_box(
    image: np.ndarray,
    instance: Instance,
    role: Role,
    px_per_mm: float | None = None,
    *,
    outer_quad: np.ndarray | None = None,
    spec: CardSpec = STANDARD,
    options: RefineOptions | None = None,
) -> RefinedQuad:
    """Refine one box label (outer or graphic border) into a quad on the image's edges.

    `px_per_mm` defaults to the estimate from an outer box and `spec`; a graphic box needs it or `outer_quad`
    (the refined outer quad, label convention, corners TL TR BR BL as the image shows them), which also keeps
    the graphic search off the card's edge and lets the frame's sides be checked against the card's.
    """
    opts = options or RefineOptions()
    if px_per_mm is None:
        if role == "outer":
            px_per_mm = estimate_px_per_mm(instance, spec)
        elif outer_quad is not None:
            px_per_mm = estimate_px_per_mm(Instance(OUTER, outer_quad), spec)
        else:
            raise ValueError("refining a graphic box needs px_per_mm or the refined outer quad")
    outer_lines = _quad_lines_cv(outer_quad) if outer_quad is not None else {}
    fits = {
        name: _refine_side(image, _Side(name, p0, p1, role, px_per_mm, outer_lines.get(name)), opts)
        for name, (p0, p1) in _box_sides(instance).items()
    }
    refused = [f"{name}: {fit.reason}" for name, fit in fits.items() if not fit.ok]
    if refused:
        return RefinedQuad(role, instance, None, fits, px_per_mm, reason="; ".join(refused))
    quad = cv_to_label(quad_from_lines(*(fits[name].line for name in SIDES)))
    problem = (
        _looseness_problem(fits, instance, px_per_mm, opts)
        or _frame_parallel_problem(fits, outer_lines, opts)
        or _quad_problem(quad, role, instance, px_per_mm, spec, opts)
    )
    return RefinedQuad(role, instance, quad if problem is None else None, fits, px_per_mm, reason=problem)


def refine_image(
    image: np.ndarray,
    instances: list[Instance],
    *,
    px_per_mm: float | None = None,
    spec: CardSpec = STANDARD,
    options: RefineOptions | None = None,
) -> list[Instance | RefinementRefusal]:
    """Refine every box label of one image; polygons pass through unchanged. Same order as `instances`."""
    refined = refine_boxes(image, instances, px_per_mm=px_per_mm, spec=spec, options=options)
    results: list[Instance | RefinementRefusal] = []
    for inst, attempt in zip(instances, refined, strict=True):
        if not inst.is_box:
            results.append(inst)
        elif attempt is None:
            results.append(RefinementRefusal(inst, f"class {inst.class_id} is neither outer nor graphic"))
        elif attempt.ok:
            results.append(attempt.instance())
        else:
            results.append(RefinementRefusal(inst, attempt.reason or "not refined", attempt))
    return results


def refine_boxes(
    image: np.ndarray,
    instances: list[Instance],
    *,
    px_per_mm: float | None = None,
    spec: CardSpec = STANDARD,
    options: RefineOptions | None = None,
) -> list[RefinedQuad | None]:
    """The refinement of each outer or graphic box label, with its figures; None for polygons and other classes.

    Outer boxes go first; each graphic box is refined inside the outer quad of the card that contains it
    (its scale and search window come from there). When that card could not be refined, its box gives the
    scale; a graphic box in no card is refined with `px_per_mm` when given, and refused otherwise.
    """
    roles = [ROLE_OF_CLASS.get(inst.class_id) if inst.is_box else None for inst in instances]
    results: list[RefinedQuad | None] = [None] * len(instances)
    for index, inst in enumerate(instances):
        if roles[index] == "outer":
            results[index] = refine_box(image, inst, "outer", px_per_mm, spec=spec, options=options)
    outers = [r for r in results if r is not None]
    for index, inst in enumerate(instances):
        if roles[index] != "graphic":
            continue
        card = _containing_card(inst, outers)
        # Without the card's refined edge the search relies on the graphic box side sitting in the border,
        # clear of the card's edge; the card's box still gives the scale.
        if card is not None and card.ok:
            scale, outer_quad = px_per_mm, card.quad
        elif px_per_mm is not None:
            scale, outer_quad = px_per_mm, None
        elif card is not None:
            scale, outer_quad = estimate_px_per_mm(card.box, spec), None
        else:
            reason = "no outer border around it to give the scale"
            results[index] = RefinedQuad("graphic", inst, None, {}, float("nan"), reason=reason)
            continue
        results[index] = refine_box(image, inst, "graphic", scale, outer_quad=outer_quad, spec=spec, options=options)
    return results


def _containing_card(graphic: Instance, outers: list[RefinedQuad]) -> RefinedQuad | None:
    """The card around the graphic box's centre: its refined quad, else its box (the smallest if several)."""
    x0, y0, x1, y1 = graphic.bbox
    centre = label_to_cv(np.array([(x0 + x1) / 2, (y0 + y1) / 2]))

    def outline(card: RefinedQuad) -> np.ndarray:
        return card.quad if card.quad is not None else card.box.polygon

    around = [
        card
        for card in outers
        if all(signed_distance(line, centre) >= 0 for line in _quad_lines_cv(outline(card)).values())
    ]
    return min(around, key=lambda card: float(np.ptp(outline(card)[:, 0]) * np.ptp(outline(card)[:, 1])), default=None)


def _box_sides(instance: Instance) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The box's sides in OpenCV coordinates, each running clockwise on screen so that inside is positive."""
    x0, y0, x1, y1 = instance.bbox
    return quad_side_ends(label_to_cv(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])))


def _quad_lines_cv(quad_label: np.ndarray) -> dict[str, Line]:
    """Lines of a quad's sides in OpenCV coordinates, inside positive."""
    return {name: line_through(p0, p1) for name, (p0, p1) in quad_side_ends(label_to_cv(quad_label)).items()}


@dataclass(frozen=True, eq=False)
class _Side:
    """One box side to refine: its ends (OpenCV coordinates), role, scale, and the outer line beside it."""

    name: str
    p0: np.ndarray
    p1: np.ndarray
    role: Role
    px_per_mm: float
    outer_line: Line | None  # only for a graphic side inside a refined card

    @property
    def line(self) -> Line:
        return line_through(self.p0, self.p1)


@dataclass(frozen=True, eq=False)
class _Window:
    """A search across a segment, px along its inward normal, from `start_px` to `stop_px`.

    A graphic search takes the border's colour from the `reference_px` before each profile's start, and starts
    no nearer than `clearance_px` inside the card's edge (`outer_line`), where that lies further in.
    """

    start_px: float
    stop_px: float
    reference_px: float
    margin_px: float  # clearance from the segment's ends
    outer_line: Line | None = None
    clearance_px: float = 0.0

    def begin_px(self, origins: np.ndarray, normal: np.ndarray) -> np.ndarray:
        """Where each profile's reference stretch begins."""
        begin = np.full(len(origins), self.start_px - self.reference_px)
        if self.outer_line is None:
            return begin
        card_edge = -signed_distance(self.outer_line, origins) / (self.outer_line[:2] @ normal)
        return np.maximum(begin, card_edge + self.clearance_px)


def _refine_side(image: np.ndarray, side: _Side, opts: RefineOptions) -> SideFit:
    mm = side.px_per_mm
    outward = opts.limits(side.role).outward_mm * mm
    window = _window(side, side.p0, side.p1, side.line, -outward, opts.inward_mm * mm, opts)
    if window is None:
        return _refused(side.name, "the border between the card edge and the box side is too narrow to search")
    coarse = _find_edges(image, side.p0, side.p1, side.line, window, side.role, opts, sharpen=False)
    coverage = float(np.mean(coarse.hits.found)) if len(coarse.hits.offsets) else 0.0
    if coverage < opts.min_coarse_coverage or np.count_nonzero(coarse.hits.found) < 2:
        return _refused(side.name, f"edge found in only {coverage:.0%} of profiles (low contrast)", coverage)
    coarse_fit = _fit_edge(coarse, 1.5, side, opts)
    if isinstance(coarse_fit, str):
        return _refused(side.name, coarse_fit, coverage)
    line = _inside_positive(coarse_fit.line, side.line)

    # Fine passes: profiles square to the current line, in a narrow window around it, between the same ends.
    # A tilted edge may leave the coarse window along much of the side; the first fine pass follows the line
    # found where it was inside, the second the line refitted along the whole side.
    for _ in range(2):
        a0, a1 = _project(line, side.p0), _project(line, side.p1)
        half = opts.fine_halfwidth_px
        window = _window(side, a0, a1, line, -half, half, opts)
        if window is None:
            return _refused(side.name, "the border between the card edge and the graphic edge is too narrow")
        fine = _find_edges(image, a0, a1, line, window, side.role, opts, sharpen=True)
        sampled = len(fine.hits.offsets)
        coverage = float(np.mean(fine.hits.found)) if sampled else 0.0
        if np.count_nonzero(fine.hits.found) < 2:
            return _refused(side.name, f"edge found in only {coverage:.0%} of profiles (low contrast)", coverage)
        fine_fit = _fit_edge(fine, 1.0, side, opts)
        if isinstance(fine_fit, str):
            return _refused(side.name, fine_fit, coverage)
        fit, line = fine_fit, _inside_positive(fine_fit.line, side.line)
    if coverage < opts.min_coverage:
        return _refused(side.name, f"edge found in only {coverage:.0%} of profiles (low contrast)", coverage)
    shift = float(np.mean(signed_distance(side.line, np.array([_project(line, side.p0), _project(line, side.p1)]))))
    within = float(np.count_nonzero(np.abs(fit.residuals) <= 1.0) / sampled)
    figures = SideFit(side.name, line, fit.rms_px, fit.count / sampled, coverage, shift, within)
    reason = _side_problem(figures, side, opts)
    return figures if reason is None else replace(figures, line=None, reason=reason)


def _fit_edge(edges: _SideEdges, threshold_px: float, side: _Side, opts: RefineOptions) -> LineFit | str:
    """The straight line through a side's edge points, or why it is not clear which straight edge is the side's."""
    if side.role == "outer":
        # A card's edge is one physical edge: where its points split between the two sides of its bright cut
        # edge, a line between them is the steady answer (seeds scored by closeness tilted some real scans'
        # card edges onto one side at one end and the other at the other, 2 to 3 px apart).
        return fit_line_robust(edges.points, inlier_threshold_px=threshold_px)
    # A frame's side may hold a second straight edge along part of it: the fit must lie on one of the two.
    return fit_frame_edge(edges.points, side.line[:2], threshold_px, _two_edge_rule(side, opts))


def _two_edge_rule(side: _Side, opts: RefineOptions) -> TwoEdgeRule:
    """The options' rule for a second straight edge along a graphic side (see `cardmetry.geometry.frame`)."""
    return TwoEdgeRule(
        min_share=opts.min_rival_share,
        max_angle_deg=opts.max_rival_angle_deg,
        min_gap_px=opts.min_rival_gap_px,
        max_mix=opts.max_rival_mix,
        min_continuity=opts.min_rival_continuity,
        overhang_profiles=max(2, round(opts.rival_overhang_mm * side.px_per_mm / opts.spacing_px)),
        max_rms_px=opts.limits(side.role).max_rms_px,
    )


def _side_problem(fit: SideFit, side: _Side, opts: RefineOptions) -> str | None:
    """Why a fitted side is not trustworthy, or None."""
    assert fit.line is not None
    limits = opts.limits(side.role)
    if fit.inlier_share < limits.min_inlier_share:
        return f"only {fit.inlier_share:.0%} of profiles lie on one straight edge"
    if fit.rms_px > limits.max_rms_px:
        return f"edge points scatter {fit.rms_px:.2f} px RMS about the line"
    tilt = angle_between_deg(fit.line, side.line)
    if tilt > opts.max_tilt_deg:
        return f"edge runs {tilt:.1f} degrees off the box side"
    if side.outer_line is not None:
        skew = angle_between_deg(fit.line, side.outer_line)
        if skew > opts.max_frame_skew_deg:
            return f"edge runs {skew:.1f} degrees off the card edge beside it"
    return None


def _refused(name: str, reason: str, coverage: float = 0.0) -> SideFit:
    nan = float("nan")
    return SideFit(name, None, rms_px=nan, inlier_share=0.0, coverage=coverage, shift_px=nan, reason=reason)


def _window(
    side: _Side, p0: np.ndarray, p1: np.ndarray, line: Line, start: float, stop: float, opts: RefineOptions
) -> _Window | None:
    """The search across the segment p0-p1 on `line` from `start` to `stop` px; None when the card's edge leaves
    no room for it anywhere along the segment."""
    window = _Window(
        start,
        stop,
        reference_px=opts.reference_mm * side.px_per_mm,
        margin_px=opts.limits(side.role).corner_margin_mm * side.px_per_mm,
        outer_line=side.outer_line,
        clearance_px=opts.graphic_clearance_mm * side.px_per_mm,
    )
    most_room = stop - float(np.min(window.begin_px(np.array([p0, p1]), line[:2])))
    return window if most_room >= 2 * window.reference_px else None


@dataclass(frozen=True, eq=False)
class _SideEdges:
    profiles: Profiles
    hits: EdgeHits

    @property
    def points(self) -> np.ndarray:
        return self.profiles.points_at(self.hits.offsets)


def _find_edges(
    image: np.ndarray,
    p0: np.ndarray,
    p1: np.ndarray,
    line: Line,
    window: _Window,
    role: Role,
    opts: RefineOptions,
    sharpen: bool,
) -> _SideEdges:
    """Edge points across a segment: the outermost strong colour step (outer), or where the colour first
    leaves the border's going inward (graphic). With `sharpen`, each edge found is then relocated with less
    smoothing, within a pixel of where it was found."""
    pad = 3.5 * opts.sigma_px + opts.offset_step_px  # the smoothing's reach: the gradient is defined up to `stop`
    profiles = sample_profiles(
        image,
        p0,
        p1,
        offset_range=(window.start_px - window.reference_px - pad, window.stop_px + pad),
        offset_step=opts.offset_step_px,
        spacing=opts.spacing_px,
        margin=window.margin_px,
        normal=line[:2],
    )
    min_gradient = step_gradient_peak(opts.min_contrast, opts.sigma_px)
    polarity: Literal[0, 1]
    if role == "outer":
        edges = profiles.values if profiles.values.ndim == 3 else profiles.values[..., None]
        polarity = 0
        hits = locate_edges(
            edges,
            profiles.offsets,
            polarity=polarity,
            select="first",
            sigma_px=opts.sigma_px,
            min_snr=opts.min_snr,
            min_gradient=min_gradient,
            search_range=(window.start_px, window.stop_px),
            min_share_of_strongest=opts.outer_edge_share,
        )
    else:
        begin = window.begin_px(profiles.origins, profiles.normal)
        polarity = 1
        edges, hits = first_edge_from_border(
            profiles,
            begin,
            window.reference_px,
            window.stop_px,
            sigma_px=opts.sigma_px,
            min_snr=opts.min_snr,
            min_gradient=min_gradient,
        )
    if sharpen:
        near = (hits.offsets - 1.0, hits.offsets + 1.0)
        sharp = locate_edges(
            edges, profiles.offsets, polarity=polarity, sigma_px=opts.fine_sigma_px, min_snr=0.0, search_range=near
        )
        hits = replace(hits, offsets=np.where(sharp.found, sharp.offsets, hits.offsets))
    return _SideEdges(profiles, hits)



def _project(line: Line, point: np.ndarray) -> np.ndarray:
    """The foot of the perpendicular from a point to a line."""
    return np.asarray(point, float) - signed_distance(line, point) * line[:2]


def _inside_positive(line: Line, reference: Line) -> Line:
    """The line with its normal turned the way the reference line's points: inward."""
    return line if line[:2] @ reference[:2] > 0 else -line


def _looseness_problem(fits: dict[str, SideFit], box: Instance, px_per_mm: float, opts: RefineOptions) -> str | None:
    """Whether the box is about as loose across (left + right) as down (top + bottom).

    A side's mean shift is the box's looseness plus half the run-out of the tilted edge along it; without the
    run-out, the two pairs of sides should agree. When they do not, one side has most likely locked onto
    another straight edge (a printed line inside a dark border, a frame inside the one the box marks).
    """
    looseness = {}
    for name, (p0, p1) in _box_sides(box).items():
        fit = fits[name]
        assert fit.line is not None
        run_out = np.hypot(*(p1 - p0)) * np.sin(np.radians(angle_between_deg(fit.line, line_through(p0, p1))))
        looseness[name] = fit.shift_px - run_out / 2
    mismatch = (looseness["top"] + looseness["bottom"] - looseness["left"] - looseness["right"]) / px_per_mm
    if abs(mismatch) > opts.max_looseness_mismatch_mm:
        wider = "top and bottom" if mismatch > 0 else "left and right"
        return f"the edges sit {abs(mismatch):.2f} mm further inside the box at {wider}: one side found another edge"
    return None


def _frame_parallel_problem(fits: dict[str, SideFit], outer_lines: dict[str, Line], opts: RefineOptions) -> str | None:
    """Whether opposite sides of a printed frame lean the same way against the card's edges beside them.

    A frame is printed rigid: it may be turned against the card (a miscut), but its top and bottom turn alike,
    as do its left and right. Measuring each against the card's own edge cancels the camera's perspective.
    """
    if not outer_lines:
        return None
    lean = {name: _signed_angle_deg(fit.line, outer_lines[name]) for name, fit in fits.items() if fit.line is not None}
    for first, second in (("top", "bottom"), ("left", "right")):
        difference = abs(lean[first] - lean[second])
        if difference > opts.max_frame_parallel_deg:
            return (
                f"the frame's {first} and {second} edges lean {difference:.2f} degrees apart against the card's: "
                "one of them is not the frame"
            )
    return None


def _signed_angle_deg(line: Line, reference: Line) -> float:
    """The angle turning `reference` onto `line`, in (-90, 90] degrees."""
    return float((line_angle_deg(line) - line_angle_deg(reference) + 90) % 180 - 90)


def _quad_problem(
    quad: np.ndarray, role: Role, box: Instance, px_per_mm: float, spec: CardSpec, opts: RefineOptions
) -> str | None:
    """Why a quad from four good sides is still implausible, or None."""
    if not np.all(np.isfinite(quad)):
        return "sides do not meet"
    x0, y0, x1, y1 = box.bbox
    slack = opts.max_corner_outside_mm * px_per_mm
    outside = (quad[:, 0] < x0 - slack) | (quad[:, 0] > x1 + slack) | (quad[:, 1] < y0 - slack)
    if (outside | (quad[:, 1] > y1 + slack)).any():
        return "refined corners fall outside the box"
    if role == "outer":
        tl, tr, br, bl = quad
        across = (np.linalg.norm(tr - tl) + np.linalg.norm(br - bl)) / 2
        down = (np.linalg.norm(bl - tl) + np.linalg.norm(br - tr)) / 2
        aspect = max(across, down) / min(across, down)
        if abs(aspect / spec.aspect - 1) > opts.max_aspect_error:
            return f"aspect ratio {aspect:.3f} is not the {spec.name} card's {spec.aspect:.3f}"
    return None


@dataclass
class RefinedImage:
    """One image's labels after refinement: refused boxes stay the boxes they were, each refusal is kept with its
    reason, and an image that could not be read keeps all its labels and says why."""

    image: LabeledImage
    refusals: list[RefinementRefusal] = field(default_factory=list)
    unreadable: str | None = None


def refine_images(
    dataset: Dataset,
    root: Path,
    *,
    spec: CardSpec = STANDARD,
    options: RefineOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[RefinedImage]:
    """Each image's box labels refined into quads, image by image (a folder's dataset and a stored version alike)."""
    for done, image in enumerate(dataset.images, start=1):
        if progress is not None:
            progress(done, len(dataset.images))
        try:
            pixels = load_image(root / image.path)
        except ImageError as error:
            yield RefinedImage(image, unreadable=error.problem)
            continue
        results = refine_image(pixels, image.instances, spec=spec, options=options)
        refusals = [result for result in results if isinstance(result, RefinementRefusal)]
        kept = [original if isinstance(result, RefinementRefusal) else result
                for original, result in zip(image.instances, results, strict=True)]
        yield RefinedImage(LabeledImage(image.path, image.width, image.height, kept), refusals)


def refusal_message(dataset: Dataset, refusal: RefinementRefusal) -> str:
    return f"{dataset.class_name(refusal.instance.class_id)} box kept, not refined: {refusal.reason}"


def refine_dataset(
    dataset: Dataset,
    root: Path,
    *,
    spec: CardSpec = STANDARD,
    options: RefineOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Dataset, list[Problem]]:
    """Every image's box labels refined into quads. A refused box stays the box it was, and its refusal becomes a
    warning naming the image, the class and the reason; an unreadable image keeps its labels and is an error."""
    images, problems = [], []
    for refined in refine_images(dataset, root, spec=spec, options=options, progress=progress):
        images.append(refined.image)
        if refined.unreadable is not None:
            problems.append(Problem(refined.image.path, refined.unreadable))
        problems += [Problem(refined.image.path, refusal_message(dataset, refusal), severity="warning")
                     for refusal in refined.refusals]
    return Dataset(list(dataset.classes), images, dataset.format), problems
