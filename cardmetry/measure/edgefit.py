"""One straight edge to sub-pixel precision, with the uncertainty of its position anywhere along it.

Profiles run along image rows (for an edge nearer vertical) or columns (nearer horizontal), so each sample is a
pixel as recorded. Colour is reduced to one value per pixel by projecting it onto the colour difference across
the edge, the linear combination in which that edge is strongest (a yellow border against blue art is a weak
edge in grey but a strong one here). A blurred step is fitted to every profile (`geometry.stepfit`), a robust
line through the steps rejects what crosses the edge (art, a name plate, dust), and the residuals of the inliers
give both the fit's RMS and, through their correlation along the edge, an honest standard error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cardmetry.geometry.edges import fit_line_robust
from cardmetry.geometry.lines import Line, signed_distance
from cardmetry.geometry.stepfit import fit_steps


@dataclass(frozen=True, eq=False)
class EdgeFit:
    """A fitted edge: its line (OpenCV pixels), how well the steps agree with it, and what supports it."""

    line: Line
    rms_px: float  # RMS perpendicular distance of the inlier steps from the line
    inliers: int
    profiles: int  # profiles sampled
    coverage: float  # share of profiles in which a step was found
    contrast: float  # median step height, in projected intensity levels
    centre_along: float  # mean position of the inliers along the edge (px)
    spread_along: float  # sum of squared deviations of their positions along the edge (px^2)
    correlation: float  # integrated autocorrelation of the residuals along the edge (>= 1)

    @property
    def direction(self) -> np.ndarray:
        return np.array([-self.line[1], self.line[0]])

    def sigma_px(self, point: np.ndarray) -> float:
        """1-sigma uncertainty of the line's perpendicular position at the foot of `point`.

        A straight-line fit's standard error at position t along it, sigma^2 (1/n + (t - mean)^2 / Sxx), with
        n reduced by the residuals' correlation (neighbouring rows share blur and paper texture, so they are not
        independent samples).
        """
        t = float(np.asarray(point, float) @ self.direction)
        leverage = 1 / self.inliers + (t - self.centre_along) ** 2 / self.spread_along
        return float(self.rms_px * np.sqrt(self.correlation * leverage))


def fit_edge(
    image: np.ndarray,
    coarse: Line,
    p0: np.ndarray,
    p1: np.ndarray,
    *,
    half_window: int = 6,
    inside: np.ndarray | None = None,
    inner_reach: int = 3,
    min_coverage: float = 0.3,
    min_inlier_share: float = 0.5,
) -> EdgeFit | str:
    """Fit the edge near the coarse line between the feet of p0 and p1 (OpenCV pixels); the reason when it cannot.

    `image` is RGB or grey; `half_window` is how far either side of the coarse line each profile reaches, so the
    coarse line must be within a few pixels of the edge. Given `inside` (a point on the inner side, such as the
    quad's centre), a second pass fits again with profiles reaching only `inner_reach` px inward of the first
    line: a thin printed rule just inside a frame edge is a bar, not a step, and a window that takes in its far
    side pulls the fitted edge outward by a large share of a pixel.
    """
    first = _fit_pass(image, coarse, p0, p1, (half_window, half_window), min_coverage, min_inlier_share)
    if isinstance(first, str) or inside is None:
        return first
    reach = (half_window, inner_reach) if _inside_is_after(first.line, inside) else (inner_reach, half_window)
    return _fit_pass(image, first.line, p0, p1, reach, min_coverage, min_inlier_share)


def _fit_pass(
    image: np.ndarray,
    line: Line,
    p0: np.ndarray,
    p1: np.ndarray,
    reach: tuple[int, int],
    min_coverage: float,
    min_inlier_share: float,
) -> EdgeFit | str:
    """One pass: profiles reaching reach[0] px before and reach[1] px after the line, steps, a robust line."""
    values, positions, across, along_coord, vertical = _profiles(image, line, p0, p1, reach)
    if len(values) < 10:
        return "the edge is too short or runs outside the image"
    fits = fit_steps(_project_colour(values), positions, across)
    coverage = float(np.mean(fits.ok))
    if coverage < min_coverage:
        return f"a step was found in only {coverage:.0%} of the profiles across it (weak or absent edge)"
    mu, other = fits.mu[fits.ok], along_coord[fits.ok]
    points = np.stack([mu, other], axis=1) if vertical else np.stack([other, mu], axis=1)
    robust = fit_line_robust(points, inlier_threshold_px=1.0)
    inlier_share = robust.count / len(values)
    if inlier_share < min_inlier_share:
        return f"only {inlier_share:.0%} of the profiles agree on one straight edge"
    kept = points[robust.inliers]
    residuals = signed_distance(robust.line, kept)
    along = kept @ np.array([-robust.line[1], robust.line[0]])
    return EdgeFit(
        line=robust.line,
        rms_px=float(np.sqrt(np.mean(residuals**2))),
        inliers=int(robust.count),
        profiles=len(values),
        coverage=coverage,
        contrast=float(np.median(np.abs(fits.step[fits.ok]))),
        centre_along=float(along.mean()),
        spread_along=float(np.sum((along - along.mean()) ** 2)),
        correlation=_integrated_autocorrelation(residuals[np.argsort(along)]),
    )


def _inside_is_after(line: Line, inside: np.ndarray) -> bool:
    """Whether `inside` lies at larger x (for a line nearer vertical) or larger y (nearer horizontal) than the line."""
    a, b, c = line
    x, y = np.asarray(inside, float)
    if abs(a) >= abs(b):
        return x > -(b * y + c) / a
    return y > -(a * x + c) / b


def _profiles(
    image: np.ndarray, coarse: Line, p0: np.ndarray, p1: np.ndarray, reach: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """Pixel windows across the line, one per row (near-vertical edge) or column (near-horizontal), reaching
    reach[0] pixels towards smaller and reach[1] towards larger coordinates."""
    a, b, c = coarse
    vertical = abs(a) >= abs(b)
    height, width = image.shape[:2]
    axis = 1 if vertical else 0  # which coordinate of p0/p1 runs along the edge
    lo, hi = sorted((float(p0[axis]), float(p1[axis])))
    along = np.arange(int(np.ceil(lo)), int(np.floor(hi)) + 1)
    limit = height if vertical else width
    along = along[(along >= 0) & (along < limit)]
    # Where the line crosses each row (or column), and the pixels either side of it.
    crossing = -(b * along + c) / a if vertical else -(a * along + c) / b
    start = np.rint(crossing).astype(int) - reach[0]
    span = reach[0] + reach[1] + 1
    other_limit = width if vertical else height
    keep = (start >= 0) & (start + span <= other_limit)
    along, crossing, start = along[keep], crossing[keep], start[keep]
    index = start[:, None] + np.arange(span)
    values = image[along[:, None], index] if vertical else image[index, along[:, None]]
    return values.astype(float), index.astype(float), crossing, along.astype(float), vertical


def _project_colour(values: np.ndarray) -> np.ndarray:
    """Colour profiles (n, m, 3) to one value per pixel along the colour difference across the edge; grey as is."""
    if values.ndim == 2:
        return values
    first, last = values[:, :3].reshape(-1, 3), values[:, -3:].reshape(-1, 3)
    difference = np.median(last, axis=0) - np.median(first, axis=0)
    norm = np.linalg.norm(difference)
    weights = difference / norm if norm > 1e-6 else np.full(3, 1 / np.sqrt(3))
    return values @ weights


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
