"""The printed frame's edge along one side of a card: the first step inward from the border's colour, and the
straight line through those steps when a side may hold two (a name plate printed across the frame).

Shared by the classical detector (`cardmetry.measure.classical`) and box-to-polygon refinement
(`cardmetry.data.refine`), which search different windows but decide the same way.

- `first_edge_from_border`: the border's colour is the median of a short stretch at the start of each
  profile; the edge is the first place after it where the colour leaves it (a rise of the colour distance).
- `fit_frame_edge`: a robust line through the edge points; where a second straight edge holds another stretch
  of the side (a plate's edge in the border, or a band of the frame found where the band outside it is too
  faint), the line lies on one of the two, never between them, and the side is refused unless one of them runs
  on past the other at both ends (the frame around a plate), since a plate may cover more of a side than the
  frame shows.
- `frame_edge_or_pair`: the same, but handing back the two edges where the side alone does not tell, for a caller
  that can tell them by the rest of the frame (the classical detector, at the frame's corners).

Coordinates are OpenCV's; lines are the normalised (a, b, c) triples of `cardmetry.geometry.lines`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cardmetry.geometry.edges import EdgeHits, LineFit, Profiles, colour_distance, fit_line_robust, locate_edges
from cardmetry.geometry.lines import angle_between_deg
from cardmetry.geometry.medians import nanmedian


def first_edge_from_border(
    profiles: Profiles,
    begin_px: np.ndarray,
    reference_px: float,
    stop_px: float,
    *,
    sigma_px: float,
    min_snr: float,
    min_gradient: float,
) -> tuple[np.ndarray, EdgeHits]:
    """Where each profile's colour first leaves the border's, going inward (along the profiles' normal).

    The border's colour is the median of the samples from `begin_px` (one per profile) over `reference_px`;
    the search runs from the end of that stretch to `stop_px`. Returns the colour distance from the border
    (n, m), for relocating the edges with other smoothing, and the edges found.
    """
    values = profiles.values if profiles.values.ndim == 3 else profiles.values[..., None]
    offsets = profiles.offsets
    begin = np.asarray(begin_px, float)[:, None]
    in_reference = (offsets >= begin) & (offsets <= begin + reference_px)
    # Only the columns that hold some profile's reference stretch: the others would be NaN to the median anyway.
    columns = np.flatnonzero(in_reference.any(axis=0))
    span = slice(columns[0], columns[-1] + 1) if len(columns) else slice(0, 0)
    # NaN for a profile with no room left: it has no border colour.
    border = nanmedian(np.where(in_reference[:, span, None], values[:, span], np.nan), axis=1)
    # Before its start (towards the card's edge) a profile counts as border: no edge there, and the smoothed
    # gradient stays defined right from the start of the search.
    values = np.where((offsets < begin)[..., None], border[:, None, :], values)
    distance = colour_distance(values, border)
    hits = locate_edges(
        distance,
        offsets,
        polarity=1,
        select="first",
        sigma_px=sigma_px,
        min_snr=min_snr,
        min_gradient=min_gradient,
        search_range=(begin[:, 0] + reference_px, stop_px),
        min_share_of_strongest=0.0,
    )
    return distance, hits


@dataclass(frozen=True)
class TwoEdgeRule:
    """When a second straight edge along part of a frame's side competes with the fitted one.

    It does when it holds `min_share` of the side's profiles, runs within `max_angle_deg` of the fitted edge, lies
    at least `min_gap_px` from it, along a stretch where at most `max_mix` of the profiles find the other edge,
    and, lying inside the fitted edge, is reached in `min_continuity` of its stretch. The frame's edge runs on past
    a plate's by at least `overhang_profiles` profiles at both ends. `max_rms_px` bounds the rival's scatter.
    """

    min_share: float
    max_angle_deg: float
    min_gap_px: float
    max_mix: float
    min_continuity: float
    overhang_profiles: int
    max_rms_px: float


def fit_frame_edge(
    points: np.ndarray,
    inward_normal: np.ndarray,
    threshold_px: float,
    rule: TwoEdgeRule,
    *,
    iterations: int = 20,
    ransac_trials: int = 256,
) -> LineFit | str:
    """The straight line through a frame side's edge points (one per profile, in order along the side, NaN where
    none was found), or why it is not clear which of two straight edges is the frame's.

    `inward_normal` points into the card (the side of the line where the art is). `iterations` and `ransac_trials`
    are each robust line fit's (`fit_line_robust`): fewer serve a coarse line.
    """
    fit = frame_edge_or_pair(
        points, inward_normal, threshold_px, rule, iterations=iterations, ransac_trials=ransac_trials
    )
    if isinstance(fit, LineFit):
        return fit
    gap = abs(_inward_gap(*fit, inward_normal))
    return f"two straight edges {gap:.1f} px apart along different stretches: a name plate or a second frame line?"


def frame_edge_or_pair(
    points: np.ndarray,
    inward_normal: np.ndarray,
    threshold_px: float,
    rule: TwoEdgeRule,
    *,
    iterations: int = 20,
    ransac_trials: int = 256,
) -> LineFit | tuple[LineFit, LineFit]:
    """As `fit_frame_edge`, but where the side alone cannot tell which of two straight edges is the frame's, the
    two (the fitted one, then its rival), for a caller that can tell them apart by the rest of the frame."""
    options = {"iterations": iterations, "ransac_trials": ransac_trials}
    first = fit_line_robust(points, inlier_threshold_px=threshold_px, seed_score="closeness", **options)
    rival = _parallel_rival(points, first, threshold_px, inward_normal, rule, options)
    if rival is None:
        return first
    chosen = _frame_line_of_two(first, rival, rule)
    if chosen is not None:
        return chosen
    return first, rival


def _frame_line_of_two(first: LineFit, rival: LineFit, rule: TwoEdgeRule) -> LineFit | None:
    """Which of two parallel straight edges along different stretches of a side is the frame's; None if unclear.

    A name plate printed across the frame's edge hides it along a stretch, where the plate's own edge lies in
    the border instead; the frame's edge runs on past the plate at both ends. A frame drawn in bands whose
    outer band edge is too faint along the middle of the side shows its next band edge there; the outer one
    runs on past it. Which edge is found along more of the side does not tell: a plate may cover more of it
    than the frame shows. A plate at one end of the side, or band edges each found towards one end, leave
    the choice open.
    """
    overhang = rule.overhang_profiles
    first_past, rival_past = _runs_past(first, rival, overhang), _runs_past(rival, first, overhang)
    if first_past == rival_past:
        return None
    return first if first_past else rival


def _parallel_rival(
    points: np.ndarray,
    fit: LineFit,
    threshold_px: float,
    inward_normal: np.ndarray,
    rule: TwoEdgeRule,
    options: dict[str, int],
) -> LineFit | None:
    """A second straight edge among the points off the fitted one: nearly parallel to it, clear of it, and along
    a stretch of its own.

    Not a rival: points that alternate with the fitted edge's along the same stretch (a dotted line along the
    frame: one ragged edge), nor, inside the fitted edge, points along a line that only some profiles of its
    stretch reach (the bottoms of a line of letters, where the frame is not drawn).
    """
    rest = np.where(fit.inliers[:, None], np.nan, points)
    needed = max(2.0, rule.min_share * len(points))
    if np.count_nonzero(~np.isnan(rest[:, 0])) < needed:
        return None
    rival = fit_line_robust(rest, inlier_threshold_px=threshold_px, seed_score="closeness", **options)
    if rival.count < needed or rival.rms_px > rule.max_rms_px:
        return None
    gap = _inward_gap(fit, rival, inward_normal)
    if angle_between_deg(rival.line, fit.line) > rule.max_angle_deg or abs(gap) < rule.min_gap_px:
        return None
    if not (_alone_in_stretch(fit, rival, rule) or _alone_in_stretch(rival, fit, rule)):
        return None
    start, stop = _stretch(rival)
    along = slice(int(start), int(stop) + 1)
    reached = float(np.mean(rival.inliers[along] | fit.inliers[along]))
    return None if gap > 0 and reached < rule.min_continuity else rival


def _alone_in_stretch(fit: LineFit, other: LineFit, rule: TwoEdgeRule) -> bool:
    """Whether the other edge is (nearly) absent along the stretch `fit` covers."""
    start, stop = _stretch(fit)
    where = np.flatnonzero(other.inliers)
    return np.count_nonzero((where >= start) & (where <= stop)) <= rule.max_mix * (stop - start + 1)


def _inward_gap(fit: LineFit, other: LineFit, inward_normal: np.ndarray) -> float:
    """How far the other edge's points lie inside the fitted line (px, negative: outside it)."""
    inward = 1.0 if fit.line[:2] @ inward_normal > 0 else -1.0
    return inward * float(np.median(fit.residuals[other.inliers]))


def _stretch(fit: LineFit) -> tuple[float, float]:
    """The profiles (in order along the side) an edge covers, ignoring a few stray points at either end."""
    start, stop = np.percentile(np.flatnonzero(fit.inliers), [2, 98])
    return float(start), float(stop)


def _runs_past(fit: LineFit, other: LineFit, overhang: int) -> bool:
    """Whether `fit` holds at least `overhang` profiles before the stretch `other` covers and as many after it."""
    start, stop = _stretch(other)
    own = np.flatnonzero(fit.inliers)
    return bool(np.count_nonzero(own < start) >= overhang and np.count_nonzero(own > stop) >= overhang)
