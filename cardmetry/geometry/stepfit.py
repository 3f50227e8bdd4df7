"""Sub-pixel edge location by fitting a blurred step to each profile.

The model is a step from level a to a + b at mu, blurred by a Gaussian of width s (optics, scanner motion) and then
averaged over the pixel's width, as a sensor does: f(x) = a + b * (1/w) * integral over [x - w/2, x + w/2] of
Phi((t - mu) / s) dt. Leaving the pixel's box filter out of the model biases sharp edges by up to a tenth of a
pixel towards the pixel grid; with it, the fit matches what a pixel records. Fitting all four parameters
(Levenberg-Marquardt) is unbiased for any sub-pixel phase, where a 3-point parabola on the gradient is biased
towards pixel centres, and it gives each edge position a standard error from the residuals. Profiles are taken
along image rows or columns (window and pixel width 1), so the samples are the pixels themselves: no
interpolation, and no interpolation bias.

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
    low: np.ndarray  # level before the step (a)
    step: np.ndarray  # height of the step (b), signed
    rms: np.ndarray  # residual RMS in intensity units

    @property
    def ok(self) -> np.ndarray:
        return np.isfinite(self.mu)


def fit_steps(
    values: np.ndarray,
    positions: np.ndarray,
    mu0: np.ndarray,
    *,
    sigma0: float = 1.0,
    iterations: int = 12,
    min_step: float = 8.0,
    max_sigma: float = 6.0,
) -> StepFits:
    """Fit a blurred step to each row of `values` (n, m) sampled at `positions` ((m,) or (n, m)), starting from mu0.

    A fit is rejected (NaN) when it does not converge inside the window, when its step is smaller than `min_step`
    intensity levels, or when the blur is wider than `max_sigma`: such a profile holds no edge worth measuring.
    """
    y = np.asarray(values, float)
    n, m = y.shape
    x = np.broadcast_to(np.asarray(positions, float), (n, m))
    mu = np.asarray(mu0, float).copy()
    s = np.full(n, sigma0)
    low, high = y[:, :2].mean(axis=1), y[:, -2:].mean(axis=1)
    a, b = low, high - low
    params = np.stack([a, b, mu, s], axis=1)
    damping = np.full(n, 1e-3)
    cost = _cost(y, x, params)
    for _ in range(iterations):
        residual, jac = _residual_and_jacobian(y, x, params)
        jtj = np.einsum("nmi,nmj->nij", jac, jac)
        jtr = np.einsum("nmi,nm->ni", jac, residual)
        # Levenberg-Marquardt: damp the diagonal, accept a step only where it lowers the cost.
        damped = (
            jtj + damping[:, None, None] * np.eye(4) * np.maximum(np.diagonal(jtj, axis1=1, axis2=2), 1e-12)[:, None, :]
        )
        try:
            delta = np.linalg.solve(damped, -jtr[..., None])[..., 0]
        except np.linalg.LinAlgError:
            delta = np.zeros_like(params)
        trial = params + delta
        trial[:, 3] = np.abs(trial[:, 3]) + 1e-6
        trial_cost = _cost(y, x, trial)
        better = np.isfinite(trial_cost) & (trial_cost < cost)
        params = np.where(better[:, None], trial, params)
        cost = np.where(better, trial_cost, cost)
        damping = np.where(better, damping / 3, damping * 4)
    residual, jac = _residual_and_jacobian(y, x, params)
    dof = max(m - 4, 1)
    variance = np.sum(residual**2, axis=1) / dof
    jtj = np.einsum("nmi,nmj->nij", jac, jac)
    with np.errstate(invalid="ignore"):
        cov_mu = np.linalg.pinv(jtj)[:, 2, 2] * variance
    a, b, mu, s = params.T
    inside = (mu > x.min(axis=1)) & (mu < x.max(axis=1))
    good = inside & (np.abs(b) >= min_step) & (s <= max_sigma) & np.isfinite(cov_mu) & (cov_mu >= 0)
    nan = np.full(n, np.nan)
    return StepFits(
        mu=np.where(good, mu, nan),
        mu_std=np.where(good, np.sqrt(np.abs(cov_mu)), nan),
        sigma=np.where(good, s, nan),
        low=np.where(good, a, nan),
        step=np.where(good, b, nan),
        rms=np.where(good, np.sqrt(variance), nan),
    )


def _model(x: np.ndarray, params: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pixel-averaged blurred step, and the standardised positions of each pixel's two ends."""
    a, b, mu, s = (params[:, k : k + 1] for k in range(4))
    z_hi, z_lo = (x + 0.5 - mu) / s, (x - 0.5 - mu) / s
    return a + b * s * (_psi(z_hi) - _psi(z_lo)), z_hi, z_lo


def _psi(z: np.ndarray) -> np.ndarray:
    """Antiderivative of the normal CDF: z * Phi(z) + phi(z)."""
    return z * ndtr(z) + np.exp(-0.5 * z**2) / _SQRT_2PI


def _cost(y: np.ndarray, x: np.ndarray, params: np.ndarray) -> np.ndarray:
    fitted, _, _ = _model(x, params)
    return np.sum((y - fitted) ** 2, axis=1)


def _residual_and_jacobian(y: np.ndarray, x: np.ndarray, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    fitted, z_hi, z_lo = _model(x, params)
    b, s = params[:, 1:2], params[:, 3:4]
    unit_step = s * (_psi(z_hi) - _psi(z_lo))
    # d/dmu of s*psi((x - mu)/s) is -Phi, and d/ds is phi: both follow from psi' = Phi.
    d_mu = -b * (ndtr(z_hi) - ndtr(z_lo))
    d_s = b * (np.exp(-0.5 * z_hi**2) - np.exp(-0.5 * z_lo**2)) / _SQRT_2PI
    jac = np.stack([np.ones_like(unit_step), unit_step, d_mu, d_s], axis=2)
    return fitted - y, jac
