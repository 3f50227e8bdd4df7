"""Measure a card with models: a model's mask gives a role's coarse quad, the measurement engine does the rest.

`measure_with_models` behaves as `cardmetry.measure.pipeline.measure_image`, except that a predictor, where one is
given, finds that role's border instead of the classical detector (a model made for both roles may serve both).

A model's mask is only as fine as the network's input: at 384 to 512 px for a 600 dpi scan, one network pixel is
four image pixels, and a mask's outline can be off by one or two of them. The engine's edge fits look only a few
pixels either side of each coarse edge: on renders at 300 and 600 dpi, true quads with every edge moved 2 px still
measure, 4 px off they are refused. So each of the model's edges is first snapped to the image's own edge within
`BAND_NETWORK_PX` network pixels of it (at least `MIN_BAND_PX`), with the per-profile edge searches the classical
detector refines its edges with (measured: edges up to the band's width off, turned 0.3 deg, measure as the true
quads do):
- a card's edge: the colour step nearest the model's edge (a dark card on a dark lid shows a weaker step than
  its sleeve's edge a few pixels outside; the model was trained to tell them apart);
- a frame's edge: the first place inward where the colour leaves the border's, read just outside the band (and
  never nearer the card's edge than a clearance).
Of two straight edges in the band (a name plate's beside the frame's), the one nearer the model's line is taken.
Where the classical detector finds the same border, the two must agree within the band, or the card is refused
(see `role_quad`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from cardmetry.data.instances import GRAPHIC, OUTER, label_to_cv
from cardmetry.geometry.edges import Profiles, edge_profiles, fit_line_robust, locate_edges, step_gradient_peak
from cardmetry.geometry.frame import first_edge_from_border
from cardmetry.geometry.lines import (
    Line,
    align_quad,
    inward_normal,
    line_through,
    order_quad,
    quad_from_lines,
    quad_from_polygon,
    quad_px_per_mm,
    quad_side_ends,
    signed_distance,
    upright_quad,
)
from cardmetry.geometry.specs import CardSpec
from cardmetry.measure.classical import Reduced, detect_graphic, detect_outer, too_small
from cardmetry.measure.engine import measure_borders
from cardmetry.measure.grades import GradeTable, add_grades
from cardmetry.measure.quality import suspected_sleeve_edge
from cardmetry.measure.result import Measurement, Refusal
from cardmetry.models.base import PredictedInstance
from cardmetry.models.letterbox import NetworkInput
from cardmetry.models.predictors import Predictor

# The snapping band either side of a model's edge: this many network pixels, but never under MIN_BAND_PX.
BAND_NETWORK_PX = 2.5
MIN_BAND_PX = 4.0
SIGMA_PX = 1.0  # gradient smoothing across the edge (full resolution)
SPACING_MM = 1.0  # between profiles along an edge
OUTER_CORNER_MM, GRAPHIC_CORNER_MM = 4.0, 2.0  # profiles keep clear of the corners (a card's are rounded)
MIN_CONTRAST = 12.0  # grey levels (RGB distance) of the smallest step that counts as an edge
REFERENCE_MM = 0.3  # the border's colour comes from this much of each profile, just outside the band
CLEARANCE_MM = 0.3  # the border's colour is read no nearer the card's edge than this
MIN_SHARE = 0.3  # profiles that find the edge, and that agree on its line, of those sampled
INLIER_PX = 1.5  # half the band of points that make one straight edge
MAX_TURN_DEG, TURN_STEP_DEG = 1.0, 0.05  # an edge may turn this much against the model's line
BAND_STEP_PX = 0.25  # between the offsets tried for a band's centre
MAX_CUT_OFF_SHARE = 0.05  # of the outline's points, lying along the image's edge
FIT_SIDE_PX = 512.0  # an outline's quad is fitted with its longer side shrunk to about this
MAX_OUTLINE_POINTS = 2000


@dataclass
class _Found:
    """A model's coarse quad for one role (OpenCV pixels), or why there is none."""

    quad: np.ndarray | None
    problem: str = ""


def measure_with_models(
    image: np.ndarray,
    spec: CardSpec,
    *,
    outer: Predictor | None,
    graphic: Predictor | None,
    side: str = "front",
    name: str = "",
    grade_tables: Sequence[GradeTable] = (),
) -> Measurement | Refusal:
    """Measure one RGB image with a model for each role that has one and the classical detector for the others.

    The models run in a thread beside the classical detectors, whose borders they are checked against (both
    onnxruntime and torch let go of the GIL while they compute). Timings (ms): "outer_model" and "graphic_model"
    (or "model" where one predictor serves both roles, and runs once), "engine" and "total"; the models' times
    overlap the rest, so the parts add up to more than the total.
    """
    start = time.perf_counter()
    if reason := too_small(image):
        return Refusal(name, side, reason)
    timing: dict[str, float] = {}
    with _ModelPasses(image, outer, graphic, timing) as passes:
        reduced = Reduced.of(image)  # the classical detectors' and the sleeve check's working copy, made once
        classical_outer = detect_outer(image, spec, reduced=reduced)
        if outer is not None and isinstance(classical_outer, str):
            outer_quad = role_quad(passes.found(outer), OUTER, image, spec, band_px(outer, image), classical_outer)
            if isinstance(outer_quad, str):
                return _refused(name, side, f"outer model: {outer_quad}", timing, start)
        elif isinstance(classical_outer, str):
            return _refused(name, side, f"outer border: {classical_outer}", timing, start)
        else:
            # Where the classical detector finds the card, the outer model can only confirm its quad or refuse the
            # card (see role_quad): the work that needs the card's quad goes on while the model runs.
            outer_quad = classical_outer
        sleeve = suspected_sleeve_edge(image, outer_quad, spec, reduced=reduced)
        flags = [sleeve] if sleeve else []
        classical_graphic = detect_graphic(image, outer_quad, spec, reduced=reduced)
        if outer is not None and outer_quad is classical_outer:
            checked = role_quad(passes.found(outer), OUTER, image, spec, band_px(outer, image), classical_outer)
            if isinstance(checked, str):
                return _refused(name, side, f"outer model: {checked}", timing, start)
        if graphic is not None:
            graphic_quad = role_quad(passes.found(graphic), GRAPHIC, image, spec, band_px(graphic, image),
                                     classical_graphic, outer_quad)
            if isinstance(graphic_quad, str):
                return _refused(name, side, f"graphic model: {graphic_quad}", timing, start, flags)
        elif isinstance(classical_graphic, str):
            return _refused(name, side, f"graphic border: {classical_graphic}", timing, start, flags)
        else:
            graphic_quad = classical_graphic
    result = measure_borders(image, outer_quad, graphic_quad, spec, side=side, image_name=name)
    result.flags.extend(flag for flag in flags if flag not in result.flags)
    add_grades(result, grade_tables)
    result.timing_ms.update(timing)
    result.timing_ms["engine"] = result.timing_ms.get("total", 0.0)
    result.timing_ms["total"] = (time.perf_counter() - start) * 1000
    return result


class _ModelPasses:
    """The predictors' passes over one image, in one background thread, in the order the roles are needed; a
    predictor serving both roles runs once, and predictors of one input size share one letterboxed input. Used as
    a context manager: passes not yet started when it closes (a card refused early) are dropped."""

    def __init__(
        self, image: np.ndarray, outer: Predictor | None, graphic: Predictor | None, timing: dict[str, float]
    ) -> None:
        self.image, self.timing, self.both = image, timing, outer is graphic
        self.prepared: dict[int, NetworkInput] = {}  # by input size; only the background thread touches it
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cardmetry-models")
        self.passes: dict[int, Future[list[PredictedInstance]]] = {}
        for key, predictor in (("outer_model", outer), ("graphic_model", graphic)):
            if predictor is not None and id(predictor) not in self.passes:
                self.passes[id(predictor)] = self.pool.submit(self._predict, predictor, key)

    def __enter__(self) -> _ModelPasses:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def found(self, predictor: Predictor) -> list[PredictedInstance]:
        """The predictor's instances, waiting for its pass (a pass's exception is raised here)."""
        return self.passes[id(predictor)].result()

    def _predict(self, predictor: Predictor, key: str) -> list[PredictedInstance]:
        began = time.perf_counter()
        size = predictor.spec.imgsz
        if size not in self.prepared:
            self.prepared[size] = NetworkInput.of(self.image, size)
        found = predictor.predict(self.image, self.prepared[size])
        self.timing["model" if self.both else key] = (time.perf_counter() - began) * 1000
        return found


def role_quad(
    instances: Sequence[PredictedInstance],
    class_id: int,
    image: np.ndarray,
    spec: CardSpec,
    band: float,
    classical: np.ndarray | str,
    outer_quad: np.ndarray | None = None,
) -> np.ndarray | str:
    """A role's quad from a model, snapped to the image's edges, and checked against the classical detector's:
    where that finds a border too, each of its edges must lie within the snapping band of the snapped one at both
    ends, or one of the two has taken another edge (a sleeve's, a name plate's) and the card is refused rather than
    guessed. Where they agree, the card's edge is taken from the classical detector, which tells a card from its
    sleeve at full resolution (a snap takes the step nearest the model's line, which can be the sleeve's), and
    the frame from the snap, which takes the edge the model was trained to find where a name plate's lies
    beside it (the classical detector can take the plate's)."""
    if isinstance(classical, str):
        return snapped_quad(instances, class_id, image, spec, band, outer_quad)
    # The card's edge is taken from the classical detector wherever the model agrees, so it needs no snap: the
    # model's own outline is compared (and its snapped edges only where the outline does not agree). The frame is
    # snapped, and the snapped frame compared.
    snapped = snapped_quad(instances, class_id, image, spec, band, outer_quad) if class_id != OUTER else "not snapped"
    if isinstance(snapped, str):
        coarse = model_quad(instances, class_id, image.shape)
        if coarse is None:
            what = "card" if class_id == OUTER else "graphic border"
            return _model_quad(instances, class_id, image.shape, what).problem
    gap = _edge_gap(coarse if isinstance(snapped, str) else snapped, classical)
    if gap > band and class_id == OUTER:
        # A model's outline can lean off the card's edge along part of a side (a sleeve's edge beside it): the
        # model's edges snapped onto the image's own steps are compared as well.
        snapped = snapped_quad(instances, class_id, image, spec, band)
        gap = min(gap, gap if isinstance(snapped, str) else _edge_gap(snapped, classical))
    if gap > band:
        what = "card's edge" if class_id == OUTER else "graphic border"
        mm = gap / quad_px_per_mm(classical if outer_quad is None else outer_quad, spec.width_mm, spec.height_mm)
        return f"the model and the classical detector disagree on the {what} by {mm:.2f} mm"
    return classical if class_id == OUTER or isinstance(snapped, str) else snapped


def _edge_gap(quad: np.ndarray, other: np.ndarray) -> float:
    """The largest distance (px) of `other`'s corners from the matching edges of `quad`."""
    ours = align_quad(order_quad(quad), other)
    gaps = []
    for (p0, p1), (q0, q1) in zip(quad_side_ends(ours).values(), quad_side_ends(other).values(), strict=True):
        line = line_through(p0, p1)
        gaps += [abs(float(signed_distance(line, q0))), abs(float(signed_distance(line, q1)))]
    return max(gaps)


def _refused(
    name: str, side: str, reason: str, timing: dict[str, float], start: float, flags: list[str] | None = None
) -> Refusal:
    timing = {**timing, "total": (time.perf_counter() - start) * 1000}
    return Refusal(name, side, reason, list(flags or []), timing)


def _model_quad(instances: Sequence[PredictedInstance], class_id: int, shape: tuple[int, ...], what: str) -> _Found:
    """The best-scoring instance of a class as a coarse quad (OpenCV pixels), or why it gives none."""
    candidates = [inst for inst in instances if inst.class_id == class_id]
    if not candidates:
        return _Found(None, f"found no {what}")
    best = max(candidates, key=lambda inst: inst.score)
    polygon = np.asarray(best.polygon, float).reshape(-1, 2)
    height, width = shape[:2]
    # A card running off the image has part of its outline along the image's edge (label convention: 0 and size).
    x, y = polygon[:, 0], polygon[:, 1]
    along_edge = (x <= 1) | (y <= 1) | (x >= width - 1) | (y >= height - 1)
    if len(polygon) and np.mean(along_edge) > MAX_CUT_OFF_SHARE:
        # From the mask alone a card cut off and a model unsure where the card is look the same.
        return _Found(None, f"the {what} the model found runs along the edge of the image (the card is cut off, "
                            "or the model cannot tell it from the background)")
    # A full-resolution outline has a point per pixel, and quad_from_polygon spaces points every 2 units along it
    # in a Python loop: it is fitted on the outline shrunk to about FIT_SIDE_PX, at most MAX_OUTLINE_POINTS of its
    # points, then scaled back (line fits are unchanged by scaling). The snap that follows makes the edges exact.
    shrink = max(1.0, float(np.ptp(polygon, axis=0).max()) / FIT_SIDE_PX) if len(polygon) else 1.0
    every = max(1, len(polygon) // MAX_OUTLINE_POINTS)
    try:
        quad = quad_from_polygon(label_to_cv(polygon)[::every] / shrink) * shrink
    except (ValueError, np.linalg.LinAlgError) as error:
        return _Found(None, f"the {what}'s outline gives no four-sided shape ({error})")
    if not np.all(np.isfinite(quad)):
        return _Found(None, f"the {what}'s outline gives no four-sided shape (its edges do not meet)")
    if np.any(quad < 0) or np.any(quad[:, 0] > width - 1) or np.any(quad[:, 1] > height - 1):
        return _Found(None, f"the {what} the model found reaches past the edge of the image")
    return _Found(upright_quad(order_quad(quad)))


def snapped_quad(
    instances: Sequence[PredictedInstance],
    class_id: int,
    image: np.ndarray,
    spec: CardSpec,
    band: float,
    outer_quad: np.ndarray | None = None,
) -> np.ndarray | str:
    """A role's quad from a model's instances, snapped onto the image's own edges (OpenCV pixels), or why there
    is none. The graphic border's snap needs the card's quad (`outer_quad`)."""
    what = "card" if class_id == OUTER else "graphic border"
    found = _model_quad(instances, class_id, image.shape, what)
    if found.quad is None:
        return found.problem
    if class_id == OUTER:
        return snap_outer(image, found.quad, spec, band)
    if outer_quad is None:
        raise ValueError("snapping a graphic border needs the card's quad")
    return snap_graphic(image, found.quad, outer_quad, spec, band)


def model_quad(instances: Sequence[PredictedInstance], class_id: int, shape: tuple[int, ...]) -> np.ndarray | None:
    """The model's own coarse quad for a class, before snapping (how far off it is tells how good the model is)."""
    return _model_quad(instances, class_id, shape, "border").quad


def band_px(predictor: Predictor, image: np.ndarray) -> float:
    """Half the band (image pixels) searched either side of a model's edge: a few of the network's pixels."""
    image_px_per_network_px = max(image.shape[:2]) / predictor.spec.imgsz
    return max(MIN_BAND_PX, BAND_NETWORK_PX * image_px_per_network_px)


def snap_outer(image: np.ndarray, quad: np.ndarray, spec: CardSpec, band_px: float) -> np.ndarray | str:
    """The card's quad with each edge moved onto the strong colour step nearest the model's edge within `band_px`
    of it, or the reason an edge has none."""
    px_per_mm = quad_px_per_mm(quad, spec.width_mm, spec.height_mm)
    centre = quad.mean(axis=0)
    lines = []
    for side, (p0, p1) in quad_side_ends(quad).items():
        inward = inward_normal(p0, p1, centre)
        profiles = _profiles(image, p0, p1, inward, (-band_px, band_px), OUTER_CORNER_MM * px_per_mm, px_per_mm)
        hits = locate_edges(
            profiles.values,
            profiles.offsets,
            select="nearest",
            sigma_px=SIGMA_PX,
            min_snr=3.0,
            min_gradient=step_gradient_peak(MIN_CONTRAST, SIGMA_PX),
            search_range=(-band_px, band_px),
        )
        line = _fit(profiles, hits.offsets, f"the card's {side} edge", band_px)
        if isinstance(line, str):
            return line
        lines.append(line)
    return upright_quad(order_quad(quad_from_lines(*lines)))


def snap_graphic(
    image: np.ndarray, quad: np.ndarray, outer_quad: np.ndarray, spec: CardSpec, band_px: float
) -> np.ndarray | str:
    """The frame's quad with each edge moved onto the first place inward where the colour leaves the border's,
    within `band_px` of the model's edge, or the reason an edge has none."""
    outer = np.asarray(outer_quad, float)
    graphic = align_quad(order_quad(quad), outer)
    px_per_mm = quad_px_per_mm(outer, spec.width_mm, spec.height_mm)
    reference = REFERENCE_MM * px_per_mm
    outer_ends = quad_side_ends(outer)
    lines = []
    for side, (p0, p1) in quad_side_ends(graphic).items():
        inward = inward_normal(p0, p1, graphic.mean(axis=0))
        # The border's colour is read just outside the band (clear of an edge blurred at its very end), but never
        # across the card's own edge.
        outside = -band_px - 2 * SIGMA_PX - reference
        profiles = _profiles(image, p0, p1, inward, (outside, band_px), GRAPHIC_CORNER_MM * px_per_mm, px_per_mm)
        card_edge = _inside_positive(line_through(*outer_ends[side]), inward)
        edge_offset = -signed_distance(card_edge, profiles.origins) / (card_edge[:2] @ inward)
        begin = np.maximum(outside, edge_offset + CLEARANCE_MM * px_per_mm)
        _, hits = first_edge_from_border(
            profiles,
            begin,
            reference,
            band_px,
            sigma_px=SIGMA_PX,
            min_snr=4.0,
            min_gradient=step_gradient_peak(MIN_CONTRAST, SIGMA_PX),
        )
        line = _fit(profiles, hits.offsets, f"the frame's {side} edge", band_px)
        if isinstance(line, str):
            return line
        lines.append(line)
    return quad_from_lines(*lines)


def _profiles(
    image: np.ndarray,
    p0: np.ndarray,
    p1: np.ndarray,
    inward: np.ndarray,
    search: tuple[float, float],
    corner_px: float,
    px_per_mm: float,
) -> Profiles:
    """Full-resolution colour profiles across an edge, reaching past the search by what the gradient needs."""
    spacing = max(2.0, SPACING_MM * px_per_mm)
    return edge_profiles(image, p0, p1, inward, search, sigma_px=SIGMA_PX, spacing=spacing, margin=corner_px)


def _fit(profiles: Profiles, offsets: np.ndarray, what: str, band_px: float) -> Line | str:
    """A robust line through the edge found in each profile, or why the profiles do not give one.

    Two straight edges can share a side within the band, each along its own stretch: a name plate's edge beside
    the frame's, or a sleeve's beside the card's. A robust fit over all the points can settle on a line across
    both; instead, of the straight bands (2 INLIER_PX wide, turned up to MAX_TURN_DEG against the model's line)
    that hold at least MIN_SHARE of the profiles' edges, the one nearest the model's line is taken, since the
    model was trained to tell such edges apart, and the line is fitted from its points only.
    """
    count = len(offsets)
    found = int(np.count_nonzero(~np.isnan(offsets)))
    if count < 10 or found < MIN_SHARE * count:
        share = found / count if count else 0.0
        return f"{what}: a clear edge within {band_px:.0f} px of the model's in only {share:.0%} of the profiles"
    along = (profiles.origins - profiles.origins[0]) @ _unit(profiles.origins[-1] - profiles.origins[0])
    chosen, most = _band_nearest_model(along, offsets, MIN_SHARE * count)
    if chosen is None:
        return f"{what}: only {most / count:.0%} of the profiles agree on a straight edge near the model's"
    fit = fit_line_robust(
        profiles.points_at(np.where(chosen, offsets, np.nan)),
        inlier_threshold_px=INLIER_PX,
        iterations=6,
        ransac_trials=64,
        seed_score="closeness",
    )
    return fit.line


def _band_nearest_model(along: np.ndarray, offsets: np.ndarray, min_count: float) -> tuple[np.ndarray | None, int]:
    """Which points (position along the model's line, offset across it; NaN for none) lie in the straight band
    nearest the model's line among those holding at least `min_count` of them (None when none does), and the most
    points any band holds."""
    valid = ~np.isnan(offsets)
    stations = np.linspace(0.0, float(along.max()), 5)  # where a band's distance from the model's line is read
    chosen, nearest, most = None, np.inf, 0
    for turn in np.tan(np.radians(np.arange(-MAX_TURN_DEG, MAX_TURN_DEG + 1e-9, TURN_STEP_DEG))):
        residual = offsets - along * turn
        values = np.sort(residual[valid])
        centres = np.arange(values[0], values[-1] + BAND_STEP_PX, BAND_STEP_PX)
        counts = np.searchsorted(values, centres + INLIER_PX, "right") - np.searchsorted(values, centres - INLIER_PX)
        most = max(most, int(counts.max()))
        distance = np.abs(centres[:, None] + stations[None, :] * turn).mean(axis=1)
        distance[counts < min_count] = np.inf
        best = int(np.argmin(distance))
        if distance[best] < nearest:
            nearest = float(distance[best])
            chosen = valid & (np.abs(np.where(valid, residual, np.inf) - centres[best]) <= INLIER_PX)
    return chosen, most


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)




def _inside_positive(line: Line, inward: np.ndarray) -> Line:
    return line if line[:2] @ inward > 0 else -line

