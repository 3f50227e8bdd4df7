"""Sub-pixel straight edges: intensity profiles across a segment, step-edge location in each, robust line fits.

The chain a caller builds from these blocks: `sample_profiles` across a coarse edge (only its straight middle,
never the rounded corners), `locate_edges` in every profile (colour profiles as they are, or first reduced to
their distance from a reference colour with `colour_distance`, which gives the edge a polarity), turn the hits
into image points (`Profiles.points_at`) and `fit_line_robust` through them.

Coordinates are OpenCV's: the centre of pixel (row j, column i) is at (x, y) = (i, j). Lines are the normalised
(a, b, c) triples of `cardmetry.geometry.lines`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from cardmetry.geometry.lines import Line
from cardmetry.geometry.medians import median, nanmedian

Polarity = Literal[-1, 0, 1]
Selection = Literal["strongest", "first", "nearest"]
SeedScore = Literal["support", "closeness"]

_MAD_TO_SIGMA = 1.4826  # robust standard deviation of Gaussian noise from the median absolute deviation
_TUKEY_C = 4.685  # Tukey biweight cut-off in robust sigmas (95 % efficiency on Gaussian residuals)


@dataclass(frozen=True, eq=False)
class Profiles:
    """Intensity profiles across a segment: one row per position along it, one column per offset along `normal`."""

    origins: np.ndarray  # (n, 2) points on the segment where each profile has offset 0
    normal: np.ndarray  # (2,) unit vector; offsets grow along it
    offsets: np.ndarray  # (m,) evenly spaced, px
    values: np.ndarray  # (n, m) or (n, m, channels) float64, NaN where a sample fell outside the image

    def points_at(self, offsets: np.ndarray) -> np.ndarray:
        """Image points at one offset per profile (NaN offsets give NaN points)."""
        return self.origins + np.asarray(offsets, float)[:, None] * self.normal


@dataclass(frozen=True, eq=False)
class EdgeHits:
    """One step edge per profile, or NaN in every field where a profile has none strong enough."""

    offsets: np.ndarray  # (n,) sub-pixel offset of the edge along the profile's normal, px
    gradient: np.ndarray  # (n,) gradient at the edge per px along the normal: signed, or its length for colour
    snr: np.ndarray  # (n,) |gradient| over the profile's gradient noise (inf on noise-free profiles)

    @property
    def found(self) -> np.ndarray:
        return ~np.isnan(self.offsets)


@dataclass(frozen=True, eq=False)
class LineFit:
    """A robust straight-line fit: the line, which points support it, and how tightly."""

    line: Line  # normalised (a, b, c)
    inliers: np.ndarray  # (n,) bool over the points given, False for NaN points
    residuals: np.ndarray  # (n,) signed distance of each point from the line, NaN for NaN points
    rms_px: float  # RMS distance of the inliers from the line
    count: int  # number of inliers


def bilinear_sample(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Values of `image` at sub-pixel points (..., 2) by bilinear interpolation; NaN outside the pixel centres.

    Done in float64 numpy rather than cv2.remap, whose fixed-point weights quantise positions to 1/32 px.
    """
    img = np.asarray(image)
    height, width = img.shape[:2]
    if height < 2 or width < 2:
        raise ValueError("bilinear sampling needs an image of at least 2 x 2 pixels")
    pts = np.asarray(points, float)
    x, y = pts[..., 0], pts[..., 1]
    inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
    x_safe, y_safe = np.where(inside, x, 0.0), np.where(inside, y, 0.0)
    col = np.clip(np.floor(x_safe).astype(np.intp), 0, width - 2)
    row = np.clip(np.floor(y_safe).astype(np.intp), 0, height - 2)
    fx, fy = x_safe - col, y_safe - row
    if img.ndim == 3:
        fx, fy = fx[..., None], fy[..., None]
    top = img[row, col] * (1 - fx) + img[row, col + 1] * fx
    bottom = img[row + 1, col] * (1 - fx) + img[row + 1, col + 1] * fx
    out = top * (1 - fy) + bottom * fy
    mask = inside if img.ndim == 2 else inside[..., None]
    return np.where(mask, out, np.nan)


def segment_positions(p0: np.ndarray, p1: np.ndarray, spacing: float, margin: float) -> np.ndarray:
    """Evenly spaced points on the segment p0-p1, keeping `margin` px clear of both ends, centred on the segment."""
    start, end = np.asarray(p0, float), np.asarray(p1, float)
    length = float(np.hypot(*(end - start)))
    usable = length - 2 * margin
    if spacing <= 0:
        raise ValueError("spacing must be positive")
    if usable < 0:
        return np.empty((0, 2))
    count = int(np.floor(usable / spacing + 1e-9)) + 1
    along = margin + (usable - spacing * (count - 1)) / 2 + spacing * np.arange(count)
    return start + along[:, None] / max(length, 1e-12) * (end - start)


def default_normal(p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    """The direction p0 -> p1 turned 90 degrees clockwise on screen (y down).

    For the edges of a quad ordered TL, TR, BR, BL this points into the quad.
    """
    dx, dy = np.asarray(p1, float) - np.asarray(p0, float)
    norm = np.hypot(dx, dy)
    if norm == 0:
        raise ValueError("a segment needs two distinct end points")
    return np.array([-dy, dx]) / norm


Sampling = Literal["exact", "remap", "nearest"]


def sample_profiles(
    image: np.ndarray,
    p0: np.ndarray,
    p1: np.ndarray,
    *,
    offset_range: tuple[float, float],
    offset_step: float = 0.5,
    spacing: float = 1.0,
    margin: float = 0.0,
    normal: np.ndarray | None = None,
    sampling: Sampling = "exact",
) -> Profiles:
    """Profiles across the segment p0-p1, sampled bilinearly; NaN where a sample falls outside the image.

    Positions are `spacing` px apart along the segment, `margin` px clear of each end (the caller keeps them off
    rounded corners). Each profile runs from offset_range[0] to offset_range[1] (inclusive) in `offset_step`
    steps along `normal` (default: `default_normal`). Colour images give (n, m, channels) values. `sampling`
    "exact" interpolates in float64; "remap" goes through OpenCV's remap, many times faster but with positions
    quantised to 1/32 px (nothing to a coarse detector); "nearest" takes the nearest pixel (a mask's labels).
    """
    if offset_step <= 0 or offset_range[1] <= offset_range[0]:
        raise ValueError("offset_range must be increasing and offset_step positive")
    unit = default_normal(p0, p1) if normal is None else np.asarray(normal, float) / np.hypot(*normal)
    origins = segment_positions(p0, p1, spacing, margin)
    count = int(np.floor((offset_range[1] - offset_range[0]) / offset_step + 1e-9)) + 1
    offsets = offset_range[0] + offset_step * np.arange(count)
    grid = origins[:, None, :] + offsets[None, :, None] * unit
    if sampling == "exact":
        values = bilinear_sample(image, grid).astype(np.float64)
    else:
        values = _remap_sample(image, grid, cv2.INTER_NEAREST if sampling == "nearest" else cv2.INTER_LINEAR)
    return Profiles(origins=origins, normal=unit, offsets=offsets, values=values)


def _remap_sample(image: np.ndarray, grid: np.ndarray, interpolation: int) -> np.ndarray:
    """`bilinear_sample` through cv2.remap (or nearest-pixel), with the same NaN outside the pixel centres."""
    if grid.shape[0] == 0:
        return np.empty((*grid.shape[:2], *image.shape[2:]))
    points = grid.astype(np.float32)
    x, y = points[..., 0], points[..., 1]
    values = cv2.remap(image, x, y, interpolation, borderMode=cv2.BORDER_REPLICATE).astype(np.float64)
    height, width = image.shape[:2]
    values[(x < 0) | (y < 0) | (x > width - 1) | (y > height - 1)] = np.nan
    return values


def colour_distance(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Euclidean distance of each sample (n, m, channels) from a reference colour per profile (n, channels).

    Across a blend from the reference colour to another the distance grows linearly with the blend, so a
    step in colour becomes a step in this channel at the same sub-pixel position, whatever its hue.
    """
    vals = np.asarray(values, float)
    ref = np.broadcast_to(np.asarray(reference, float), (vals.shape[0], vals.shape[2]))
    return np.linalg.norm(vals - ref[:, None, :], axis=2)


def _derivative_kernel(step: float, sigma_px: float) -> np.ndarray:
    """Taps of the derivative of a unit-area Gaussian (sigma in px) for samples `step` px apart, per px."""
    sigma = sigma_px / step
    radius = max(1, int(np.ceil(3.5 * sigma)))
    taps = np.arange(-radius, radius + 1, dtype=float)
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    return -taps * kernel / (sigma**2 * kernel.sum()) / step


def smoothed_gradient(values: np.ndarray, step: float, sigma_px: float) -> np.ndarray:
    """Derivative of each profile (rows) after Gaussian smoothing, intensity per px; NaN near NaN samples.

    The smoothing turns the sampled edge's gradient into a near-Gaussian lobe, which the log-parabola peak fit
    then locates without bias, and keeps pixel noise from splitting the lobe.
    """
    derivative = _derivative_kernel(step, sigma_px)
    radius = len(derivative) // 2
    rows = np.asarray(values, float)
    padded = np.pad(rows, ((0, 0), (radius, radius)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * radius + 1, axis=1)
    gradient = windows @ derivative[::-1]
    # Edge padding invents a flat continuation: do not trust the gradient where the kernel overhangs the ends.
    gradient[:, :radius] = np.nan
    gradient[:, -radius:] = np.nan
    return gradient


def gradient_noise(values: np.ndarray, step: float, sigma_px: float) -> np.ndarray:
    """The standard deviation pixel noise alone would give each profile's smoothed gradient.

    Pixel noise comes from the median absolute difference of samples one pixel apart, which a step edge
    (a couple of differences) hardly moves, unlike the spread of the gradient itself, whose edge lobe can fill
    much of a short profile. It is scaled by the derivative kernel's gain on independent pixels.
    """
    rows = np.asarray(values, float)
    lag = max(1, round(1 / step))
    differences = rows[:, lag:] - rows[:, :-lag]
    pixel_sigma = _MAD_TO_SIGMA * nanmedian(np.abs(differences), axis=1) / np.sqrt(2)  # NaN: entirely outside
    gain = float(np.linalg.norm(_derivative_kernel(1.0, sigma_px)))
    return pixel_sigma * gain


def locate_edges(
    values: np.ndarray,
    offsets: np.ndarray,
    *,
    polarity: Polarity = 0,
    select: Selection = "strongest",
    sigma_px: float = 1.2,
    min_snr: float = 6.0,
    min_gradient: float = 0.0,
    search_range: tuple[float | np.ndarray, float | np.ndarray] | None = None,
    min_share_of_strongest: float = 0.0,
) -> EdgeHits:
    """Locate one step edge per profile to sub-pixel precision.

    `values` is (n, m) or, for colour, (n, m, channels); `offsets` the (m,) evenly spaced offsets of its
    columns. Candidates are local maxima of the smoothed gradient taken with the sign `polarity` asks for (+1:
    values rise with the offset, -1: they fall, 0: either; colour profiles use the gradient's length across
    channels and take no polarity) whose magnitude exceeds both `min_gradient` and `min_snr` times the
    profile's gradient noise.

    `select="first"` takes the candidate with the smallest offset (the first met when scanning along the
    normal), `"strongest"` the largest, `"nearest"` the one nearest offset 0 (where a model put the edge).
    `search_range` (lo, hi), numbers or one per profile, keeps candidates to those offsets while the whole profile
    still feeds the gradient. `min_share_of_strongest` also drops candidates weaker than that share of the
    profile's strongest one: with "first" it picks the first edge nearly as strong as the strongest, passing over
    a faint shadow or sleeve edge met before it.

    The peak is refined by a Gaussian (log-parabola) fit through it and its two neighbours. Profiles without a
    candidate get NaN.
    """
    vals = np.asarray(values, float)
    offs = np.asarray(offsets, float)
    if vals.ndim not in (2, 3) or vals.shape[1] != len(offs) or len(offs) < 3:
        raise ValueError("values must be (n, m) or (n, m, channels) with m >= 3 matching offsets")
    if vals.ndim == 3 and polarity != 0:
        raise ValueError("a colour profile has no polarity: reduce it to one channel first")
    step = float(offs[1] - offs[0])
    gradient, noise = _profile_gradient(vals, step, sigma_px)
    score = np.abs(gradient) if polarity == 0 else polarity * gradient
    score = np.nan_to_num(score, nan=-np.inf)

    # A floor far below any real contrast keeps rounding ripples on noise-free profiles from counting as edges.
    noise_floor = 1e-9 * max(1.0, float(np.nanmax(np.abs(vals), initial=0.0)))
    threshold = np.maximum(min_gradient, min_snr * np.maximum(np.nan_to_num(noise, nan=np.inf), noise_floor))
    centre, left, right = score[:, 1:-1], score[:, :-2], score[:, 2:]
    # A peak needs real neighbours: next to a NaN stretch a maximum may just be where the data begins.
    candidate = (centre >= left) & (centre > right) & (centre > threshold[:, None])
    candidate &= np.isfinite(left) & np.isfinite(right)
    if search_range is not None:
        lo, hi = (np.atleast_1d(np.asarray(bound, float))[:, None] for bound in search_range)
        candidate &= (offs[1:-1] >= lo) & (offs[1:-1] <= hi)
    if min_share_of_strongest > 0:
        strongest = np.max(np.where(candidate, centre, -np.inf), axis=1, keepdims=True)
        candidate &= centre >= min_share_of_strongest * strongest
    has_edge = candidate.any(axis=1)
    if select == "first":
        peak = np.argmax(candidate, axis=1)
    elif select == "nearest":
        peak = np.argmin(np.where(candidate, np.abs(offs[1:-1]), np.inf), axis=1)
    else:
        peak = np.argmax(np.where(candidate, centre, -np.inf), axis=1)
    peak = peak + 1  # back to column indices of `score`

    rows = np.arange(len(vals))
    delta = _log_parabola_vertex(score[rows, peak - 1], score[rows, peak], score[rows, peak + 1])
    located = offs[peak] + delta * step
    peak_gradient = gradient[rows, peak]
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.abs(peak_gradient) / noise
    missing = ~has_edge
    return EdgeHits(
        offsets=np.where(missing, np.nan, located),
        gradient=np.where(missing, np.nan, peak_gradient),
        snr=np.where(missing, np.nan, snr),
    )


def _profile_gradient(values: np.ndarray, step: float, sigma_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed gradient (n, m) and its noise (n,); for colour, the gradient's length across channels."""
    if values.ndim == 2:
        return smoothed_gradient(values, step, sigma_px), gradient_noise(values, step, sigma_px)
    n, m, channels = values.shape
    rows = values.transpose(0, 2, 1).reshape(n * channels, m)
    gradient = smoothed_gradient(rows, step, sigma_px).reshape(n, channels, m)
    noise = gradient_noise(rows, step, sigma_px).reshape(n, channels)
    return np.sqrt(np.sum(gradient**2, axis=1)), np.sqrt(np.sum(noise**2, axis=1))


def _log_parabola_vertex(before: np.ndarray, peak: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Sub-sample vertex offset of a Gaussian through three samples; a plain parabola where one is not positive."""
    with np.errstate(divide="ignore", invalid="ignore"):
        positive = (before > 0) & (peak > 0) & (after > 0)
        lb, lp, la = (np.log(np.where(positive, v, 1.0)) for v in (before, peak, after))
        gaussian = (lb - la) / (2 * (lb - 2 * lp + la))
        parabola = (before - after) / (2 * (before - 2 * peak + after))
        delta = np.where(positive, gaussian, parabola)
    return np.clip(np.nan_to_num(delta, nan=0.0, posinf=0.0, neginf=0.0), -0.5, 0.5)


def fit_line_robust(
    points: np.ndarray,
    *,
    inlier_threshold_px: float = 1.0,
    ransac_trials: int = 256,
    iterations: int = 20,
    min_cutoff_px: float = 0.25,
    seed: int = 0,
    seed_score: SeedScore = "support",
) -> LineFit:
    """A straight line through edge points that ignores the ones off it (art, a sleeve edge, dust).

    A RANSAC seed, the line through a pair of the points, is refined by iteratively reweighted orthogonal least
    squares with Tukey biweights; the cut-off is 4.685 robust sigmas of the residuals but never below
    `min_cutoff_px`, so noise-free points are not trimmed to nothing. Inliers are the points with non-zero final
    weight. NaN points are ignored.

    `seed_score` picks the seed. "support": the line with most points within `inlier_threshold_px`; where the
    points of one edge split between two close lines (the two sides of a card's bright cut edge) its line runs
    between them. "closeness": the line whose points lie nearest it, each point within the threshold counting
    1 - (distance / threshold)^2 (MSAC). Where two parallel edges each hold part of the points along their own
    stretch (a name plate's edge beside a frame's), a slightly tilted line crossing both can have more points
    within the threshold than either edge, and the refinement from it then settles on a compromise through
    both; scored by closeness, the seed lies on one of the edges.
    """
    pts = np.asarray(points, float).reshape(-1, 2)
    valid = ~np.isnan(pts).any(axis=1)
    usable = pts[valid]
    if len(usable) < 2:
        raise ValueError(f"a line fit needs at least two points, got {len(usable)}")

    line = _ransac_seed(usable, inlier_threshold_px, ransac_trials, np.random.default_rng(seed), seed_score)
    cutoff = inlier_threshold_px
    for _ in range(iterations):
        residuals = usable @ line[:2] + line[2]
        weights = np.clip(1 - (residuals / cutoff) ** 2, 0, None) ** 2
        if np.count_nonzero(weights) < 2:
            break
        new_line = _weighted_total_least_squares(usable, weights)
        new_line = new_line if new_line[:2] @ line[:2] >= 0 else -new_line  # keep the seed's orientation
        inside = np.abs(residuals) < cutoff
        cutoff = max(_TUKEY_C * _robust_sigma(residuals[inside]), min_cutoff_px)
        converged = np.allclose(new_line, line, atol=1e-10)
        line = new_line
        if converged:
            break

    residuals_all = np.full(len(pts), np.nan)
    residuals_all[valid] = usable @ line[:2] + line[2]
    inliers = np.zeros(len(pts), bool)
    inliers[valid] = np.abs(residuals_all[valid]) < cutoff
    rms = float(np.sqrt(np.mean(residuals_all[inliers] ** 2))) if inliers.any() else float("nan")
    return LineFit(line=line, inliers=inliers, residuals=residuals_all, rms_px=rms, count=int(inliers.sum()))


def _ransac_seed(points: np.ndarray, threshold: float, trials: int, rng: np.random.Generator, score: SeedScore) -> Line:
    """The line through a pair of the points with the best score (see `fit_line_robust`); support ties go to the
    line whose supporting points lie nearest it."""
    first = rng.integers(0, len(points), trials)
    second = rng.integers(0, len(points), trials)
    distinct = np.any(points[first] != points[second], axis=1)
    if not distinct.any():
        raise ValueError("a line fit needs two distinct points")
    p, q = points[first[distinct]], points[second[distinct]]
    a, b = p[:, 1] - q[:, 1], q[:, 0] - p[:, 0]
    norm = np.hypot(a, b)
    lines = np.stack([a, b, p[:, 0] * q[:, 1] - q[:, 0] * p[:, 1]], axis=1) / norm[:, None]
    distances = np.abs(points @ lines[:, :2].T + lines[:, 2])  # (points, trials)
    if score == "closeness":
        return lines[int(np.argmax(np.clip(1 - (distances / threshold) ** 2, 0, None).sum(axis=0)))]
    within = distances < threshold
    support = within.sum(axis=0)
    spread = np.where(within, distances, 0).sum(axis=0)
    best = np.lexsort((spread, -support))[0]
    return lines[best]


def _weighted_total_least_squares(points: np.ndarray, weights: np.ndarray) -> Line:
    """The line minimising the weighted sum of squared orthogonal distances."""
    centre = weights @ points / weights.sum()
    centred = points - centre
    scatter = (centred * weights[:, None]).T @ centred
    _, vectors = np.linalg.eigh(scatter)
    a, b = vectors[:, 0]  # normal = direction of least spread
    return np.array([a, b, -(a * centre[0] + b * centre[1])])


def _robust_sigma(residuals: np.ndarray) -> float:
    if len(residuals) == 0:
        return 0.0
    return _MAD_TO_SIGMA * median(np.abs(residuals - median(residuals)))


def edge_profiles(
    image: np.ndarray,
    p0: np.ndarray,
    p1: np.ndarray,
    inward: np.ndarray,
    search: tuple[float, float],
    *,
    sigma_px: float,
    spacing: float,
    margin: float,
) -> Profiles:
    """Full-resolution profiles across the edge p0-p1 every `spacing` px, `margin` px clear of its ends, at half
    a pixel through cv2.remap, reaching past the `search` range by what a derivative-of-Gaussian of `sigma_px`
    needs at its ends."""
    pad = 3.5 * sigma_px + 0.5
    return sample_profiles(
        image,
        p0,
        p1,
        normal=inward,
        sampling="remap",
        offset_range=(search[0] - pad, search[1] + pad),
        offset_step=0.5,
        spacing=spacing,
        margin=margin,
    )


def step_gradient_peak(contrast: float, sigma_px: float) -> float:
    """The smoothed-gradient peak of a step of `contrast` blurred by about a pixel of optics and smoothed by
    `sigma_px`: a floor for `locate_edges(min_gradient=...)` that keeps steps weaker than `contrast` out."""
    return float(contrast / (np.sqrt(2 * np.pi) * np.hypot(sigma_px, 1.0)))
