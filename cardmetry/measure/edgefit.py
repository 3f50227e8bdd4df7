"""One straight edge to sub-pixel precision, with the uncertainty of its position anywhere along it.

Profiles run along image rows (for an edge nearer vertical) or columns (nearer horizontal), so each sample is a
pixel as recorded; a hundred or two, evenly spread along the edge, are plenty. A blurred step is fitted to every
profile (`geometry.stepfit`), in the colour that carries the edge (a yellow border against blue art is a weak edge
in grey but a strong one along their colour difference), a robust line through the steps rejects what crosses the
edge (art, a name plate, dust), and the residuals of the inliers give both the fit's RMS and, through their
correlation along the edge, an honest standard error.

Two passes: a sparse one finds the edge from the coarse line where the gradient peaks, and the full one fits steps
in windows placed on the edge found. Around a printed frame's edge the first pass also looks for a thin rule just
inside it: the rule is a bar, and a step fitted through it is pulled by a large share of a pixel towards its
middle; the full pass then fits the bar's far side too, with the rule's width measured once for the whole edge.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from cardmetry.geometry.edges import fit_line_robust, locate_edges
from cardmetry.geometry.lines import Line, signed_distance
from cardmetry.geometry.medians import median
from cardmetry.geometry.stepfit import PooledBar, StepFits, fit_pooled_bar, fit_steps, pooled_costs

SPARSE_SHARE = 4  # the first pass fits every 4th profile of the full pass
# The first pass's line takes gradient peaks this close to it (they are good to a tenth of a pixel): under a third
# of the narrowest rule (MIN_RULE_PX), so that where the peaks lie on a rule's outer side along one stretch and on
# its inner side along another (the art beside the rule turns lighter or darker than the border), a line tilted
# across both stretches does not take in either whole.
FIRST_PASS_THRESHOLD_PX = 0.5
MIN_STEP_LEVELS = 8.0  # a smaller step is no edge worth measuring
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, as JPEG encodes luma
SYSTEMATIC_SHARE = 0.15  # of the residual scatter, coherent along a plain edge (see EdgeFit.sigma_px)
RULE_SYSTEMATIC_SHARE = 0.4  # and along an edge fitted with a rule beside it
MIN_LINE_THRESHOLD_PX = 0.1  # the robust line takes points this close to it, or farther where steps are noisier
SPLIT_BLOCKS = 10  # stretches along the edge compared for a second edge beside the first
MIN_BLOCK_TOLERANCE_PX = 0.06  # a stretch's median step lies this close to its edge's line (a few times its scatter)
RULE_PROFILES = 32  # profiles the search for a rule pools: a rule is the same all along the edge
RULE_SEARCH_SIGMA_PX = 0.9  # the blur the search for a rule assumes where none is known; the fit measures it
MIN_RULE_PX = 1.5  # narrower than this a rule is a line, not a bar with two edges to fit
RULE_GAIN = 0.3  # a rule is there when two edges explain this share of what one step leaves unexplained,
RULE_MIN_SHARE = 0.2  # the step onto the rule is at least this share of the larger of the two,
RULE_MAX_SPREAD = 0.3  # and it varies along the edge by at most this share of itself (one ink, one border)
NARROW_RULE_SIGMAS = 4.0  # a rule narrower than this many blur sigmas leaves its width and the blur entangled
MAX_BLUR_RATIO = 1.3  # a step this much blurrier than the edge's sharper ones took in a second edge beside it
MIN_PULL_PX = 0.1  # and such steps that lie this far off the line, on one side in the median, were pulled there
LUMA_BLUR_SHARE = 8  # the blur in luma is measured on every 8th step found: a median needs no more
BLUR_AGREEMENT = 1.4  # the card edges' blur is taken for a narrow rule's when the two agree within this factor


@dataclass(frozen=True, eq=False)
class EdgeFit:
    """A fitted edge: its line (OpenCV pixels), how well the steps agree with it, and what supports it."""

    line: Line
    rms_px: float  # RMS perpendicular distance of the inlier steps from the line
    inliers: int
    profiles: int  # profiles fitted
    coverage: float  # share of profiles in which a step was found
    contrast: float  # median step height, in intensity levels (the length of the colour change)
    centre_along: float  # mean position of the inliers along the edge (px)
    spread_along: float  # sum of squared deviations of their positions along the edge (px^2)
    correlation: float  # integrated autocorrelation of the residuals along the edge (>= 1)
    blur_px: float  # median blur (Gaussian sigma) of the steps; in luma where asked for (see fit_edge)
    rule_px: float = 0.0  # width of the printed rule fitted beside the edge, 0 where there is none
    rule_sigma_px: float = 0.0  # what a narrow rule's width, entangled with the blur, leaves uncertain (1 sigma)
    alternative: EdgeFit | None = None  # a second straight edge the steps off this line support, if any

    @property
    def direction(self) -> np.ndarray:
        return np.array([-self.line[1], self.line[0]])

    def sigma_px(self, point: np.ndarray) -> float:
        """1-sigma uncertainty of the line's perpendicular position at the foot of `point`.

        A straight-line fit's standard error at position t along it, sigma^2 (1/n + (t - mean)^2 / Sxx), with
        n reduced by the residuals' correlation (neighbouring profiles share blur and paper texture, so they are
        not independent samples), and a share of the residuals' scatter that is the same all along the edge, which
        no number of profiles averages away: what the step model misses of the real edge (a blur that is not quite
        Gaussian, JPEG's coarser colour, a rule beside it). On renders the errors of one image's edges agree to 0.9
        between fits from different coarse lines, so they are fixed by the image, not by chance; they put that
        share at 0.15 of the scatter for a plain edge and 0.4 beside a rule. A narrow rule adds how far the edge
        moves between the blurs that fit it (`rule_sigma_px`).
        """
        t = float(np.asarray(point, float) @ self.direction)
        leverage = 1 / self.inliers + (t - self.centre_along) ** 2 / self.spread_along
        share = RULE_SYSTEMATIC_SHARE if self.rule_px else SYSTEMATIC_SHARE
        return float(np.hypot(self.rms_px * np.sqrt(self.correlation * leverage + share**2), self.rule_sigma_px))


@dataclass(frozen=True)
class _Rule:
    """A printed rule beside the edge, found by the first pass."""

    shift_px: float  # from the first pass's line to the edge proper, along the profiles
    width_px: float  # signed: towards larger coordinates along the profiles when positive
    blur_px: float  # the blur that fits the pair best
    sigma_px: float  # how far the edge moves between the blurs that fit a narrow rule (0 for a wide one)


@dataclass(frozen=True)
class _Profiles:
    values: np.ndarray  # (n, m) grey or (n, m, channels) colour
    positions: np.ndarray  # (n, m) pixel coordinates across the edge
    crossing: np.ndarray  # (n,) where the line the windows were placed on crosses each profile
    along: np.ndarray  # (n,) int: the row (near-vertical edge) or column of each profile
    vertical: bool

    def points(self, mu: np.ndarray) -> np.ndarray:
        return np.stack([mu, self.along], axis=1) if self.vertical else np.stack([self.along, mu], axis=1)


def fit_edge(
    image: np.ndarray,
    coarse: Line,
    p0: np.ndarray,
    p1: np.ndarray,
    *,
    half_window: int = 6,
    inside: np.ndarray | None = None,
    inner_reach: int = 3,
    max_rule_px: float = 0.0,
    blur_px: float | None = None,
    max_profiles: int = 160,
    min_coverage: float = 0.3,
    min_inlier_share: float = 0.5,
    card_edge: bool = False,
) -> EdgeFit | str:
    """Fit the edge near the coarse line between the feet of p0 and p1 (OpenCV pixels); the reason when it cannot.

    `image` is RGB or grey; `half_window` is how far either side of the coarse line the first pass's profiles reach,
    so the coarse line must be within a few pixels of the edge. `inside` is a point on the inner side (such as the
    quad's centre). With `max_rule_px`, the widest printed rule to look for just inside the edge (a printed frame's
    edge; needs `inside`), the full pass reaches only `inner_reach` px inward of the edge, past which the art begins,
    unless a rule is found there, whose far side the window then takes in and the model fits. A narrow rule's width
    and the blur are hard to tell apart, and a wrong width moves the edge: there `blur_px`, the blur measured on a
    plain edge of the same image (the card's own), settles it.

    A `card_edge` (the card's cut edge, not a print's) has its `blur_px` measured in luma, as the search for a rule
    sees the print: an edge carried by colour is blurred more (JPEG halves the resolution of colour), and a rule
    fitted with that blur comes out too narrow, or merges into one step. And its steps far blurrier than the rest
    are left out of the line (see `_without_blurred_steps`), unless too few would remain for one.
    """
    rows, vertical = _rows(image, coarse, p0, p1, max_profiles)
    if len(rows) < 10:
        return "the edge is too short or runs outside the image"
    sparse = rows[len(rows) % SPARSE_SHARE // 2 :: SPARSE_SHARE]
    first_profiles = _profiles(image, coarse, sparse, vertical, (half_window, half_window))
    peaks = _gradient_peaks(first_profiles)
    first = _robust_line(first_profiles, peaks, FIRST_PASS_THRESHOLD_PX, min_coverage, min_inlier_share)
    if isinstance(first, str):
        return first
    line, inliers = first
    inward = 0 if inside is None else (1 if _inside_is_after(line, inside) else -1)
    printed = max_rule_px >= MIN_RULE_PX and inward != 0
    rule = None
    if printed:
        # Beyond half_window + 4 px a rule's far side is out of every window, and the first pass cannot have
        # landed on it either.
        reach = int(np.ceil(min(max_rule_px, half_window + 4)))
        rule = _find_rule(image, line, first_profiles.along[inliers], vertical, inward, reach, blur_px)
    sigma = 1.0 if blur_px is None else blur_px
    bar, inner = None, inner_reach if printed else half_window
    if rule is not None:
        sigma, bar = rule.blur_px, rule.width_px
        line = line - np.array([0.0, 0.0, rule.shift_px * (line[0] if vertical else line[1])])
        # Past the rule's far side the window takes in two pixels of art, so that the model sees where it lies.
        inner = int(np.ceil(abs(bar) + 2 * sigma + 2))
    full_profiles = _profiles(
        image, line, rows, vertical, (half_window, inner) if inward >= 0 else (inner, half_window)
    )
    fits = _fit_steps(full_profiles, bar, sigma)
    result = _final_line(full_profiles, fits, rule, min_coverage, min_inlier_share)
    if card_edge and not isinstance(result, str):
        return _sharp_card_edge(full_profiles, fits, result, min_coverage, min_inlier_share)
    return result


def _sharp_card_edge(
    profiles: _Profiles, fits: StepFits, fit: EdgeFit, min_coverage: float, min_inlier_share: float
) -> EdgeFit:
    """The card's edge fitted again without the steps a second edge beside it widened and pulled off the line (if
    one remains), with its blur in luma."""
    sharp = _without_blurred_steps(profiles, fits, fit.line)
    if sharp is not None:
        refit = _final_line(profiles, sharp, None, min_coverage, min_inlier_share)
        if not isinstance(refit, str):
            fit, fits = refit, sharp
    return dataclasses.replace(fit, blur_px=_luma_blur(profiles, fits, fit.blur_px))


def _luma_blur(profiles: _Profiles, fits: StepFits, fallback: float) -> float:
    """The blur of the steps in luma, from every LUMA_BLUR_SHARE-th profile with a step; `fallback` where luma
    shows a step in under half of them (an edge between two colours of one brightness)."""
    if profiles.values.ndim == 2:
        return fallback
    sample = np.flatnonzero(fits.ok)[::LUMA_BLUR_SHARE]
    luma = fit_steps(
        profiles.values[sample] @ LUMA_WEIGHTS,
        profiles.positions[sample],
        fits.mu[sample],
        sigma0=fallback,
        min_step=MIN_STEP_LEVELS,
    )
    return float(np.nanmedian(luma.sigma)) if luma.ok.mean() >= 0.5 else fallback


def _final_line(
    profiles: _Profiles, fits: StepFits, rule: _Rule | None, min_coverage: float, min_inlier_share: float
) -> EdgeFit | str:
    """The robust line through the full pass's steps, with a second candidate where the steps support two lines:
    a name plate's edge beside the frame's over part of its length, off the line or pulling it. The more numerous
    of the two need not be the frame's; the caller tells them apart."""
    # A few standard errors of one profile's step, so that a parallel edge a few tenths of a pixel away stays apart.
    threshold = max(MIN_LINE_THRESHOLD_PX, 4 * float(np.nanmedian(fits.mu_std)) if fits.ok.any() else 1.0)
    full = _robust_line(profiles, fits.mu, threshold, min_coverage, min_inlier_share)
    if isinstance(full, str):
        return full
    second = _second_edge(profiles.points(fits.mu), *full, threshold)
    if second is not None and second.sum() >= min_inlier_share * len(profiles.values):
        lines = [
            _robust_line(profiles, np.where(stretch, fits.mu, np.nan), threshold, 0.0, min_inlier_share)
            for stretch in (np.isfinite(fits.mu) & ~second, second)
        ]
        if not any(isinstance(candidate, str) for candidate in lines):
            alternative = _edge_fit(profiles, *lines[1], fits, rule)
            return _edge_fit(profiles, *lines[0], fits, rule, alternative)
    return _edge_fit(profiles, *full, fits, rule)


def _without_blurred_steps(profiles: _Profiles, fits: StepFits, line: Line) -> StepFits | None:
    """The steps, less those far blurrier than the edge's sharper ones, where those lie off `line` to one side: one
    blur holds all along an edge, and a step fitted much wider took in a second edge within its window (a sleeve's
    edge a few pixels off the card's, converging with it), which pulls it towards that edge by up to a pixel while it
    still lies close enough to the line to tilt it. None where no such steps are: noise widens a few steps, but
    does not move them all one way."""
    if not fits.ok.any():
        return None
    # Against the sharper steps' blur: where the second edge runs beside the first over half the edge, the median
    # step is one of those widened by it.
    blurred = fits.sigma > MAX_BLUR_RATIO * float(np.nanpercentile(fits.sigma, 25))
    if not blurred.any():
        return None
    pull = median(signed_distance(line, profiles.points(fits.mu)[blurred]))
    if abs(pull) < MIN_PULL_PX:
        return None
    return dataclasses.replace(fits, mu=np.where(blurred, np.nan, fits.mu))


def _second_edge(points: np.ndarray, line: Line, inliers: np.ndarray, threshold: float) -> np.ndarray | None:
    """The profiles of the smaller of two stretches of the edge whose steps lie on different lines, or None.

    The steps off the line are one such stretch. But a robust line through two edges a few tenths of a pixel apart
    (or meeting at a slight angle) can run between them with every step an inlier: then short stretches along the
    edge, each summed up by its median step, fall on two lines, and the line through the most of them (any two
    stretches seed one) leaves out the other edge's.
    """
    finite = np.isfinite(points).all(axis=1)
    safe = np.where(finite[:, None], points, 0.0)
    residuals, along = signed_distance(line, safe), safe @ np.array([-line[1], line[0]])
    order = np.flatnonzero(inliers)[np.argsort(along[inliers])]
    blocks = [b for b in np.array_split(order, SPLIT_BLOCKS) if len(b)]
    t = np.array([median(along[b]) for b in blocks])
    r = np.array([median(residuals[b]) for b in blocks])
    sizes = np.array([len(b) for b in blocks])
    i, j = np.triu_indices(len(blocks), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (r[j] - r[i]) / (t[j] - t[i])
    off = np.abs(r[None, :] - (r[i, None] + (t[None, :] - t[i, None]) * slope[:, None]))
    members = off <= max(threshold / 2, MIN_BLOCK_TOLERANCE_PX)
    best = members[int(np.argmax(np.where(members, sizes, 0).sum(axis=1)))] if len(i) else np.ones(len(blocks), bool)
    if best.all():
        others = finite & ~inliers
        return others if others.any() else None
    apart = np.zeros(len(points), bool)
    for block, member in zip(blocks, best, strict=True):
        apart[block] = not member
    together = inliers & ~apart
    return apart if apart.sum() < together.sum() else together


def _gradient_peaks(profiles: _Profiles) -> np.ndarray:
    """The strongest edge in each profile (NaN where none stands out of the noise), where the gradient peaks.

    Good to a tenth of a pixel, which is all the first pass needs, and unlike a step fitted through a rule's bar it
    lands on one of the bar's two edges, not between them. The smoothing is light so that the two stay apart.
    """
    offsets = np.arange(profiles.values.shape[1], dtype=float)
    # No noise test: in a window this short a rule's two edges inflate the noise estimate from pixel differences;
    # the robust line sorts out what noise alone found.
    hits = locate_edges(profiles.values, offsets, sigma_px=0.7, min_snr=0.0, min_gradient=MIN_STEP_LEVELS / 4)
    return profiles.positions[:, 0] + hits.offsets


def _fit_steps(profiles: _Profiles, bar_width: float | None, sigma: float) -> StepFits:
    """A step in every profile, or a step and a rule's far side. A wide rule's width is fitted in each profile: it
    changes along the edge under perspective, and a far side blurred more than the near one (JPEG halves the
    resolution of colour) is then met where it lies; a narrow rule keeps the width its pooled fit found, which a
    single profile could not tell from its blur.

    A plain step changes colour along one direction, so its profiles are first reduced to that one channel (a third
    of the work); a rule's two sides change colour along two.
    """
    values = profiles.values if bar_width is not None else _project_colour(profiles.values)
    return fit_steps(
        values,
        profiles.positions,
        profiles.crossing,
        sigma0=sigma,
        bar_width=bar_width,
        fit_bar_width=bar_width is not None and abs(bar_width) >= NARROW_RULE_SIGMAS * sigma,
        min_step=MIN_STEP_LEVELS,
    )


def _robust_line(
    profiles: _Profiles, mu: np.ndarray, threshold: float, min_coverage: float, min_inlier_share: float
) -> tuple[Line, np.ndarray] | str:
    """A robust line through the edge found in each profile (NaN: none): the line and which profiles are inliers.

    The line's seed is the one the most points lie close to, within `threshold` px, and the refinement keeps at
    least the points that close: where a name plate's edge runs beside the frame's over part of its length, or
    meets it at a slight angle, a seed or a cut-off that took in every point within a loose threshold could cross
    both, and the refinement would settle on a tilted compromise.
    """
    if len(profiles.values) < 3:
        return "the edge is too short or runs outside the image"
    coverage = float(np.mean(np.isfinite(mu)))
    if coverage < min_coverage:
        return f"a step was found in only {coverage:.0%} of the profiles across it (weak or absent edge)"
    robust = fit_line_robust(
        profiles.points(mu), inlier_threshold_px=threshold, min_cutoff_px=threshold, seed_score="closeness"
    )
    inlier_share = robust.count / len(profiles.values)
    if inlier_share < min_inlier_share:
        return f"only {inlier_share:.0%} of the profiles agree on one straight edge"
    return robust.line, robust.inliers


def _edge_fit(
    profiles: _Profiles,
    line: Line,
    inliers: np.ndarray,
    fits: StepFits,
    rule: _Rule | None,
    alternative: EdgeFit | None = None,
) -> EdgeFit:
    """The line with what its inlier steps say about it."""
    kept = profiles.points(fits.mu)[inliers]
    residuals = signed_distance(line, kept)
    along = kept @ np.array([-line[1], line[0]])
    return EdgeFit(
        line=line,
        rms_px=float(np.sqrt(np.mean(residuals**2))),
        inliers=int(inliers.sum()),
        profiles=len(profiles.values),
        coverage=float(np.mean(fits.ok)),
        contrast=median(np.abs(fits.step[fits.ok])),
        centre_along=float(along.mean()),
        spread_along=float(np.sum((along - along.mean()) ** 2)),
        correlation=_integrated_autocorrelation(residuals[np.argsort(along)]),
        blur_px=median(fits.sigma[inliers]),
        rule_px=0.0 if rule is None else abs(rule.width_px),
        rule_sigma_px=0.0 if rule is None else rule.sigma_px,
        alternative=alternative,
    )


def _find_rule(
    image: np.ndarray, line: Line, along: np.ndarray, vertical: bool, inward: int, reach: int, blur: float | None
) -> _Rule | None:
    """A printed rule at the edge, from all the first pass's inlier profiles together, or None.

    The first pass's line lies on one of the rule's two edges (or between them, pulled by the bar): on its outer
    edge, the frame's, when the coarse line was near it, or on its inner one when that was the stronger. So the
    search pairs a step near the line with a second step anywhere within `reach`; the rule is there when the pair
    explains the profiles far better than the step alone, and the frame's edge is the pair's outer step. A coarse
    grid over the pair and the blur finds it, a pooled fit measures it: a width off by 0.1 px moves the edge
    fitted with it by some 0.04 px.
    """
    along = along[:: max(1, len(along) // RULE_PROFILES)]
    profiles = _profiles(image, line, along, vertical, (reach + 3, reach + 3))
    data = (_luma_if_it_carries(profiles.values), profiles.positions, profiles.crossing)
    anchors, offsets = np.arange(-1.5, 1.51, 0.5), np.arange(-reach, reach + 1e-9, 0.5)
    # The grid's blur matters: too wide a blur makes a narrow rule look narrower still, and the fit from there may
    # merge its two sides into one blurred step.
    search_sigma = blur or RULE_SEARCH_SIGMA_PX
    single, pair = _pair_costs(data, search_sigma, anchors, offsets)
    best_single = float(single.min())
    i, j = np.unravel_index(int(np.argmin(pair)), pair.shape)
    if not best_single > 0 or best_single - pair[i, j] < RULE_GAIN * best_single:
        return None
    start = (anchors[i], offsets[j] - anchors[i])
    bar = fit_pooled_bar(*data, *start, search_sigma)
    # One ink on one border: the step onto the rule is alike in every profile that crosses it. Where the first
    # pass's line met something else in a few profiles (the letters of a name plate across the edge), their steps
    # differ, and pooled with the rule's they widen it (a 2 px rule by half a pixel). A narrow rule keeps the
    # pooled width (see _fit_steps), so it is measured again without them; a wide one's is fitted in each profile.
    same_ink = _same_ink(bar, inward)
    narrow = abs(bar.width) < NARROW_RULE_SIGMAS * bar.sigma
    if narrow and not same_ink.all() and same_ink.sum() >= len(same_ink) / 2:
        data = tuple(d[same_ink] for d in data)
        bar = fit_pooled_bar(*data, bar.offset, bar.width, bar.sigma)
    spread = 0.0
    if blur and abs(bar.width) < NARROW_RULE_SIGMAS * bar.sigma:
        # The card's own blur settles a narrow rule's width, unless it is far from the print's (a colour-only card
        # edge, which JPEG blurs): then it is no guide. How far the edge moves between the two blurs is a measure
        # of what the entanglement leaves uncertain.
        held = fit_pooled_bar(*data, *start, blur, fit_sigma=False)
        spread = abs(_sides(held, inward)[0] - _sides(bar, inward)[0]) / 2
        if abs(np.log(blur / bar.sigma)) < np.log(BLUR_AGREEMENT):
            bar = held
    if abs(bar.width) < MIN_RULE_PX:  # the two steps merged into one: a blurrier edge, not a rule
        return None
    outer, inner = _sides(bar, inward)
    first_is_outer = outer == bar.offset
    if not _printed_rule(bar.heights[:, 0 if first_is_outer else 1], bar.heights[:, 1 if first_is_outer else 0]):
        return None
    return _Rule(shift_px=outer, width_px=inner - outer, blur_px=bar.sigma, sigma_px=spread)


def _same_ink(bar: PooledBar, inward: int) -> np.ndarray:
    """Which profiles' steps from the border onto the rule (the bar's outer side; the inner one changes with the
    art) are the typical one's, the median's, within RULE_MAX_SPREAD of its height."""
    steps = bar.heights[:, 0 if _sides(bar, inward)[0] == bar.offset else 1]
    typical = np.median(steps, axis=0)
    return np.linalg.norm(steps - typical, axis=1) <= RULE_MAX_SPREAD * float(np.linalg.norm(typical))


def _sides(bar: PooledBar, inward: int) -> tuple[float, float]:
    """The bar's outer side (the frame's edge, towards the border) and its inner side, as offsets."""
    ends = (bar.offset, bar.offset + bar.width)
    return ends if inward * bar.width > 0 else ends[::-1]


def _printed_rule(outer: np.ndarray, inner: np.ndarray) -> bool:
    """Whether a pair of steps, per profile (n, channels), outer (from the border) and inner (into the art), is a
    printed rule: a bar of ink of one colour all along the edge, clearly apart from the border's.

    A halo that sharpening or JPEG leaves beside an edge is a faint bar; a gradient in the art, which a second
    step also explains in part, changes the first step's colour along the edge with the art; an edge between two
    colours that JPEG blurred (it halves the resolution of colour) looks like two steps the same way, no bar.
    """
    typical = np.median(outer, axis=0)
    height = float(np.linalg.norm(typical))
    if height < 2 * MIN_STEP_LEVELS:
        return False
    spread = float(np.median(np.linalg.norm(outer - typical, axis=1)))
    strong = height >= RULE_MIN_SHARE * max(height, float(np.median(np.linalg.norm(inner, axis=1))))
    turns_back = float(np.median(inner @ typical)) / height**2 <= -RULE_MIN_SHARE
    return strong and turns_back and spread <= RULE_MAX_SPREAD * height


def _pair_costs(
    data: tuple[np.ndarray, np.ndarray, np.ndarray], sigma: float, anchors: np.ndarray, offsets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled costs of one step at each anchor, and of two at each anchor and offset at least MIN_RULE_PX apart."""
    single, pair = pooled_costs(*data, sigma, offsets, anchors)
    apart = np.abs(offsets[None, :] - anchors[:, None]) >= MIN_RULE_PX
    return single, np.where(apart, pair, np.inf)


def _rows(
    image: np.ndarray, coarse: Line, p0: np.ndarray, p1: np.ndarray, max_profiles: int
) -> tuple[np.ndarray, bool]:
    """At most `max_profiles` rows (near-vertical edge) or columns, evenly spread between the feet of p0 and p1."""
    a, b, _ = coarse
    vertical = abs(a) >= abs(b)
    axis = 1 if vertical else 0  # which coordinate of p0/p1 runs along the edge
    lo, hi = sorted((float(p0[axis]), float(p1[axis])))
    limit = image.shape[0] if vertical else image.shape[1]
    first, last = max(int(np.ceil(lo)), 0), min(int(np.floor(hi)), limit - 1)
    if last < first:
        return np.empty(0, int), vertical
    count = min(last - first + 1, max_profiles)
    return np.unique(np.rint(np.linspace(first, last, count)).astype(int)), vertical


def _profiles(image: np.ndarray, line: Line, along: np.ndarray, vertical: bool, reach: tuple[int, int]) -> _Profiles:
    """Pixel windows across the line at each of the rows (or columns) `along`, reaching reach[0] pixels towards
    smaller and reach[1] towards larger coordinates; those that would leave the image are dropped."""
    a, b, c = line
    crossing = -(b * along + c) / a if vertical else -(a * along + c) / b
    start = np.rint(crossing).astype(int) - reach[0]
    span = reach[0] + reach[1] + 1
    keep = (start >= 0) & (start + span <= (image.shape[1] if vertical else image.shape[0]))
    along, crossing, start = along[keep], crossing[keep], start[keep]
    index = start[:, None] + np.arange(span)
    values = image[along[:, None], index] if vertical else image[index, along[:, None]]
    return _Profiles(values.astype(float), index.astype(float), crossing, along, vertical)


def _luma_if_it_carries(values: np.ndarray) -> np.ndarray:
    """Colour profiles (n, m, 3) as luma where luma carries a fair share of the contrast; otherwise as they are.

    JPEG keeps colour at half the resolution of luma, so a rule's sides are blurrier in colour than in luma, and a
    rule's width fitted with one blur for both is off; luma has the blur of the optics alone.
    """
    if values.ndim == 2:
        return values
    luma = values @ LUMA_WEIGHTS
    luma_range = np.median(np.ptp(luma, axis=1))
    colour_range = np.median(np.max(np.ptp(values, axis=1), axis=1))
    return luma if luma_range >= max(2 * MIN_STEP_LEVELS, 0.25 * colour_range) else values


def _project_colour(values: np.ndarray) -> np.ndarray:
    """Colour profiles (n, m, 3) to one value per pixel along each profile's own colour difference across its edge
    (the mean of its last two pixels less that of its first two); grey as is.

    A yellow border against blue art is a weak edge in grey but a strong one along that difference; each profile
    takes its own, since the art beside a frame's edge changes colour along it.
    """
    if values.ndim == 2:
        return values
    difference = values[:, -2:].mean(axis=1) - values[:, :2].mean(axis=1)
    norm = np.linalg.norm(difference, axis=1, keepdims=True)
    weights = np.where(norm > 1e-6, difference / np.maximum(norm, 1e-6), 1 / np.sqrt(3))
    return np.einsum("nmc,nc->nm", values, weights)


def _inside_is_after(line: Line, inside: np.ndarray) -> bool:
    """Whether `inside` lies at larger x (for a line nearer vertical) or larger y (nearer horizontal) than the line."""
    a, b, c = line
    x, y = np.asarray(inside, float)
    if abs(a) >= abs(b):
        return x > -(b * y + c) / a
    return y > -(a * x + c) / b


def _integrated_autocorrelation(residuals: np.ndarray, max_lag: int = 50) -> float:
    """1 + 2 * sum of the residuals' autocorrelation over lags until it first drops below zero (Sokal's window)."""
    r = residuals - residuals.mean()
    variance = float(r @ r)
    if len(r) < 3 or variance == 0:
        return 1.0
    tau = 1.0
    for lag in range(1, min(max_lag, len(r) - 1)):
        rho = float(r[:-lag] @ r[lag:]) / variance
        if rho <= 0:
            break
        tau += 2 * rho
    return tau
