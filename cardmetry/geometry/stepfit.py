"""Sub-pixel edge location by fitting a blurred step, or a step and a thin bar, to each profile.

The model is a step from level a to a + b at mu, blurred by a Gaussian of width s (optics, scanner motion) and then
averaged over the pixel's width, as a sensor does: f(x) = a + b * U(x; mu, s), with U(x; mu, s) = integral over
[x - 1/2, x + 1/2] of Phi((t - mu) / s) dt. Leaving the pixel's box filter out of the model biases sharp edges by
up to a tenth of a pixel towards the pixel grid; with it, the fit matches what a pixel records. Profiles are taken
along image rows or columns, so the samples are the pixels themselves: no interpolation, and no interpolation
bias.

A thin printed rule just inside an edge is a bar, not a step: where its far side is within a few pixels a step
fitted through it is pulled towards the bar's middle by a large share of a pixel. The bar model adds its far side,
f(x) = a + b * U(x; mu, s) + c * U(x; mu + w, s). A narrow bar's width and the blur are hard to tell apart in one
profile, so the width is given (measured once for the whole edge by `fit_pooled_bar`, which pools the profiles) or,
for a bar several blurs wide, fitted in each profile too.

Colour profiles are fitted as they are, one set of levels per channel around one shared edge. The levels enter
linearly and are solved exactly for every (mu, s) (variable projection); only mu and s (and a fitted width) are
iterated (Levenberg-Marquardt), which converges in a few steps from a start within a pixel or two. Unbiased for
any sub-pixel phase, and each position gets a standard error from the residuals.

A perfectly sharp edge (blur far below a pixel) leaves one mixed pixel per profile and the fit ill-conditioned
where the edge sits near a pixel boundary; real optics blur by 0.4 px or more, where the fit is unbiased (tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

_SQRT_2PI = np.sqrt(2 * np.pi)


@dataclass(frozen=True)
class StepFits:
    """One fitted step per profile; NaN where a profile held no usable step."""

    mu: np.ndarray  # edge position, in the profile's coordinates
    mu_std: np.ndarray  # its standard error
    sigma: np.ndarray  # blur width
    step: np.ndarray  # height of the step: signed for grey profiles, the length of the colour change for colour
    rms: np.ndarray  # residual RMS in intensity units
    bar_width: np.ndarray  # the bar's width (as given, or fitted), NaN without a bar

    @property
    def ok(self) -> np.ndarray:
        return np.isfinite(self.mu)


def pooled_costs(
    values: np.ndarray,
    positions: np.ndarray,
    centres: np.ndarray,
    sigma: float,
    offsets: np.ndarray,
    anchors: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """How well one step, or two, explain all the profiles together, for steps at fixed offsets from each profile's
    centre: the costs summed over profiles of a step at each anchor (a,), and of steps at each anchor and each
    offset together (a, g). Levels are fitted per profile and channel; the blur is `sigma` for all.

    `values` is (n, m) or (n, m, channels), `positions` (n, m) consecutive pixel centres, `centres` (n,). A structure
    that every profile shares, such as a printed rule beside an edge, lowers the pair's cost far below the single
    step's; what differs from profile to profile (art) hardly does.
    """
    y = np.asarray(values, float)
    y = y[..., None] if y.ndim == 2 else y
    y = y - y.mean(axis=1, keepdims=True)
    bounds = np.concatenate([positions[:, :1] - 0.5, positions + 0.5], axis=1)
    grid = np.concatenate([anchors, offsets])
    z = (bounds[:, None, :] - (centres[:, None] + grid[None, :])[:, :, None]) / sigma
    steps = sigma * np.diff(_psi(z), axis=2)
    steps -= steps.mean(axis=2, keepdims=True)  # (n, a + g, m), the constant level projected out
    moments = steps @ y  # (n, a + g, channels)
    norms = np.einsum("ngm,ngm->ng", steps, steps)
    a = len(anchors)
    with np.errstate(invalid="ignore", divide="ignore"):
        explained = np.sum(moments**2, axis=2) / norms
        cross = steps[:, :a] @ steps[:, a:].transpose(0, 2, 1)  # (n, a, g)
        det = norms[:, :a, None] * norms[:, None, a:] - cross**2
        # Two columns at once: t^T G^-1 t for the 2 x 2 gram of each anchor and offset, summed over channels.
        ta, tg = moments[:, :a, None, :], moments[:, None, a:, :]
        pair = (
            np.sum(
                norms[:, None, a:, None] * ta**2 - 2 * cross[..., None] * ta * tg + norms[:, :a, None, None] * tg**2,
                axis=3,
            )
            / det
        )
    total = np.sum(y**2, axis=(1, 2))
    single = total[:, None] - np.nan_to_num(explained[:, :a])
    both = np.where(
        det > 1e-9 * norms[:, :a, None] * norms[:, None, a:], total[:, None, None] - pair, single[..., None]
    )
    return single.sum(axis=0), both.sum(axis=0)


def fit_steps(
    values: np.ndarray,
    positions: np.ndarray,
    mu0: np.ndarray,
    *,
    sigma0: float | np.ndarray = 1.0,
    bar_width: float | np.ndarray | None = None,
    fit_bar_width: bool = False,
    iterations: int = 5,
    min_step: float = 8.0,
    max_sigma: float = 6.0,
) -> StepFits:
    """Fit a blurred step to each profile of `values` (n, m) or, for colour, (n, m, channels), sampled at pixel
    centres `positions` ((m,) or (n, m), consecutive), starting from mu0 (n,) and blur sigma0.

    With `bar_width` w the model is a step at mu and a second one at mu + w (w < 0: at smaller positions): a bar,
    whose width is kept, or with `fit_bar_width` fitted too, starting from w.
    A fit is rejected (NaN) when it does not converge inside the window, when its step is smaller than `min_step`
    intensity levels, or when the blur is wider than `max_sigma`: such a profile holds no edge worth measuring.
    """
    y = np.asarray(values, float)
    y = y[..., None] if y.ndim == 2 else y
    n, m, channels = y.shape
    x = np.broadcast_to(np.asarray(positions, float), (n, m))
    bounds = np.concatenate([x[:, :1] - 0.5, x + 0.5], axis=1)  # neighbouring pixels share a boundary
    centred = y - y.mean(axis=1, keepdims=True)  # the constant level drops out of every fit below
    start = [np.asarray(mu0, float), np.broadcast_to(np.asarray(sigma0, float), (n,))]
    width = None if bar_width is None else np.broadcast_to(np.asarray(bar_width, float), (n,))
    if fit_bar_width and width is not None:
        start.append(width)
    theta = np.stack(start, axis=1)
    state = _State.at(bounds, theta, width, centred)
    free = theta.shape[1]
    damping = np.full(n, 1e-3)
    for _ in range(iterations):
        jtj, jtr = state.normal_equations()
        scale = np.maximum(np.diagonal(jtj, axis1=1, axis2=2), 1e-12)
        trial_theta = theta - _solve_small(jtj + damping[:, None, None] * np.eye(free) * scale[:, None, :], jtr)
        trial_theta[:, 1] = np.abs(trial_theta[:, 1]) + 1e-6
        trial = _State.at(bounds, trial_theta, width, centred)
        better = np.isfinite(trial.cost) & (trial.cost < state.cost)
        theta = np.where(better[:, None], trial_theta, theta)
        state = _State.select(better, trial, state)
        damping = np.where(better, damping / 3, damping * 4)
    jtj, _ = state.normal_equations()
    levels = state.levels.shape[1] + 1
    variance = state.cost / max(m * channels - levels * channels - free, 1)
    var_mu = _solve_small(jtj, np.broadcast_to(np.eye(free)[0], (n, free)))[:, 0] * variance
    mu, s = theta[:, 0], theta[:, 1]
    height = state.levels[:, 0]
    step_height = height[:, 0] if channels == 1 else np.linalg.norm(height, axis=1)
    inside = (mu > x.min(axis=1)) & (mu < x.max(axis=1))
    good = inside & (np.abs(step_height) >= min_step) & (s <= max_sigma) & np.isfinite(var_mu) & (var_mu > 0)
    nan = np.full(n, np.nan)
    fitted_width = nan if width is None else (theta[:, 2] if fit_bar_width else width)
    return StepFits(
        mu=np.where(good, mu, nan),
        mu_std=np.where(good, np.sqrt(np.abs(var_mu)), nan),
        sigma=np.where(good, s, nan),
        step=np.where(good, step_height, nan),
        rms=np.where(good, np.sqrt(variance), nan),
        bar_width=np.where(good, fitted_width, nan),
    )


@dataclass(frozen=True)
class PooledBar:
    """One bar fitted to many profiles at once: where its first edge lies from each profile's centre, its width and
    the blur, shared by all; the levels are each profile's own."""

    offset: float
    width: float
    sigma: float
    cost: float  # residual sum of squares over all profiles and channels
    heights: np.ndarray  # (n, 2, channels): each profile's steps at the bar's first edge and at its second


def fit_pooled_bar(
    values: np.ndarray,
    positions: np.ndarray,
    centres: np.ndarray,
    offset0: float,
    width0: float,
    sigma0: float,
    *,
    iterations: int = 8,
    fit_sigma: bool = True,
) -> PooledBar:
    """The bar (offset, width, blur) that explains all the profiles best together, from a start within a few
    tenths of a pixel (Levenberg-Marquardt on the three shared parameters, the levels solved per profile).

    What a single profile cannot tell apart, a narrower bar or a wider blur, hundreds of profiles at every sub-pixel
    phase can.
    """
    y = np.asarray(values, float)
    y = y[..., None] if y.ndim == 2 else y
    y = y - y.mean(axis=1, keepdims=True)
    x = np.asarray(positions, float)
    bounds = np.concatenate([x[:, :1] - 0.5, x + 0.5], axis=1)
    centres = np.asarray(centres, float)

    def state(shared: np.ndarray) -> _State:
        theta = np.stack([centres + shared[0], np.full(len(centres), shared[2]), np.full(len(centres), shared[1])], 1)
        return _State.at(bounds, theta, theta[:, 2], y)

    shared = np.array([offset0, width0, sigma0], float)  # offset, width, sigma
    # The per-profile parameters are (mu, s, w); an offset moves mu alike in every profile.
    free = [0, 2, 1] if fit_sigma else [0, 2]
    current = state(shared)
    damping = 1e-3
    for _ in range(iterations):
        jtj, jtr = (m.sum(axis=0) for m in current.normal_equations())
        jtj, jtr = jtj[np.ix_(free, free)], jtr[free]
        damped = jtj + damping * np.diag(np.maximum(np.diag(jtj), 1e-12))
        trial_shared = shared.copy()
        trial_shared[: len(free)] -= np.linalg.lstsq(damped, jtr, rcond=None)[0]
        trial_shared[2] = abs(trial_shared[2])
        trial = state(trial_shared)
        if trial.cost.sum() < current.cost.sum():
            shared, current, damping = trial_shared, trial, damping / 3
        else:
            damping *= 4
    return PooledBar(float(shared[0]), float(shared[1]), float(shared[2]), float(current.cost.sum()), current.levels)


@dataclass(frozen=True)
class _State:
    """The model at one parameter vector per profile, its levels solved: what one Levenberg-Marquardt step needs.

    The parameters are (mu, s), and the bar's width when it is fitted. The columns are the unit steps, centred
    along the profile (the constant level is thereby projected out); the levels are their least-squares heights
    per channel.
    """

    theta: np.ndarray  # (n, 2 or 3)
    columns: np.ndarray  # (n, k, m) centred unit steps: the edge's, and the bar's far side
    d_mu: np.ndarray  # (n, k, m) their derivatives by mu
    d_sigma: np.ndarray  # (n, k, m) and by s
    gram: np.ndarray  # (n, k, k)
    levels: np.ndarray  # (n, k, channels)
    residual: np.ndarray  # (n, m, channels)
    cost: np.ndarray  # (n,)

    @classmethod
    def at(cls, bounds: np.ndarray, theta: np.ndarray, width: np.ndarray | None, y: np.ndarray) -> _State:
        mu, s = theta[:, 0], theta[:, 1]
        parts = [_unit_step(bounds, mu, s)]
        if width is not None:
            parts.append(_unit_step(bounds, mu + (theta[:, 2] if theta.shape[1] == 3 else width), s))
        columns, d_mu, d_sigma = (np.stack([part[i] for part in parts], axis=1) for i in range(3))
        columns = columns - columns.mean(axis=2, keepdims=True)
        gram = columns @ columns.transpose(0, 2, 1)
        levels = _solve_small(gram, columns @ y)
        residual = y - columns.transpose(0, 2, 1) @ levels
        return cls(theta, columns, d_mu, d_sigma, gram, levels, residual, _dot(residual, residual))

    @classmethod
    def select(cls, where: np.ndarray, new: _State, old: _State) -> _State:
        def pick(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return np.where(where.reshape(-1, *([1] * (a.ndim - 1))), a, b)

        return cls(*(pick(getattr(new, f), getattr(old, f)) for f in cls.__dataclass_fields__))

    def normal_equations(self) -> tuple[np.ndarray, np.ndarray]:
        """J^T J (n, p, p) and J^T r (n, p) for the parameters, the levels re-solved at every step (Kaufman's
        variable projection): the model's change less its share that new levels would absorb."""
        changes = [_centred(d.transpose(0, 2, 1) @ self.levels) for d in (self.d_mu, self.d_sigma)]
        if self.theta.shape[1] == 3:  # the width moves only the bar's far side
            changes.append(_centred(self.d_mu[:, 1, :, None] * self.levels[:, 1:2]))
        moments = [self.columns @ c for c in changes]
        absorbed = [_solve_small(self.gram, t) for t in moments]
        p = len(changes)
        jtj = np.empty((len(self.theta), p, p))
        for i in range(p):
            for j in range(i, p):
                jtj[:, i, j] = jtj[:, j, i] = _dot(changes[i], changes[j]) - _dot(moments[i], absorbed[j])
        # The residual is orthogonal to the columns, so only the change itself meets it; the model falls as the
        # residual grows, hence the sign.
        jtr = -np.stack([_dot(c, self.residual) for c in changes], axis=1)
        return jtj, jtr


def _centred(change: np.ndarray) -> np.ndarray:
    return change - change.mean(axis=1, keepdims=True)


def _unit_step(bounds: np.ndarray, mu: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """U at each pixel for a step at mu (n,), with its derivatives by mu and by s.

    U is s * (psi(z_hi) - psi(z_lo)) with psi(z) = z * Phi(z) + phi(z), the antiderivative of Phi; its derivative by
    mu is -(Phi(z_hi) - Phi(z_lo)) and by s is phi(z_hi) - phi(z_lo), both from psi' = Phi.
    """
    z = (bounds - mu[:, None]) / s[:, None]
    cdf, pdf = ndtr(z), np.exp(-0.5 * z**2) / _SQRT_2PI
    return s[:, None] * np.diff(z * cdf + pdf, axis=1), -np.diff(cdf, axis=1), np.diff(pdf, axis=1)


def _psi(z: np.ndarray) -> np.ndarray:
    """Antiderivative of the normal CDF: z * Phi(z) + phi(z)."""
    return z * ndtr(z) + np.exp(-0.5 * z**2) / _SQRT_2PI


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-profile inner product of two (n, ...) arrays."""
    return (a * b).reshape(len(a), -1).sum(axis=1)


def _solve_small(matrix: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Batched solves of (n, p, p) systems, p of 1 to 3, with right-hand sides (n, p, ...), by Cramer's rule (the
    profiles are many and the systems tiny); zero where a system is singular."""
    p = matrix.shape[1]
    m = matrix.reshape(*matrix.shape, *([1] * (rhs.ndim - 2)))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if p == 1:
            out = rhs / m[:, 0]
        elif p == 2:
            det = m[:, 0, 0] * m[:, 1, 1] - m[:, 0, 1] * m[:, 1, 0]
            out = (
                np.stack(
                    [m[:, 1, 1] * rhs[:, 0] - m[:, 0, 1] * rhs[:, 1], m[:, 0, 0] * rhs[:, 1] - m[:, 1, 0] * rhs[:, 0]],
                    1,
                )
                / det[:, None]
            )
        else:
            # The inverse is the transposed cofactor matrix over the determinant; cofactor rows are cross products.
            rows = [m[:, i] for i in range(3)]
            cofactors = np.stack([np.cross(rows[1], rows[2], axis=1), np.cross(rows[2], rows[0], axis=1),
                                  np.cross(rows[0], rows[1], axis=1)], axis=1)  # fmt: skip
            det = np.sum(rows[0] * cofactors[:, 0], axis=1)
            out = np.einsum("nji...,nj...->ni...", cofactors, rhs) / det[:, None]
    return np.where(np.isfinite(out), out, 0.0)
