"""The blurred-step fit: unbiased for any sub-pixel phase, honest about its own uncertainty."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtr

from cardmetry.geometry.stepfit import fit_steps

WINDOW = np.arange(-6, 7, dtype=float)


def pixel_steps(
    edges: np.ndarray, blur: float, low: float = 40, high: float = 220, noise: float = 0.0, seed: int = 0
) -> np.ndarray:
    """What pixels centred at WINDOW record of a step at each edge: the blurred step averaged over each pixel
    (integrated numerically on a fine grid, independently of the model's closed form)."""
    fine = np.linspace(-0.5, 0.5, 201)
    x = WINDOW[None, :, None] + fine[None, None, :]
    blurred = ndtr((x - edges[:, None, None]) / blur) if blur > 0 else (x > edges[:, None, None]).astype(float)
    values = low + (high - low) * np.trapezoid(blurred, fine, axis=2)
    return values + np.random.default_rng(seed).normal(0, noise, values.shape)


@pytest.mark.parametrize(
    ("blur", "noise", "max_bias", "max_spread"),
    [
        (0.35, 0.0, 0.005, 0.005),  # a very sharp edge: mostly the pixel's own box filter
        (0.6, 0.0, 0.005, 0.005),  # a scanner's blur
        (1.2, 0.0, 0.005, 0.005),  # a soft phone photo
        (0.8, 2.0, 0.01, 0.05),  # with sensor noise: unbiased, and the spread is what the fit predicts
    ],
)
def test_edges_at_every_sub_pixel_phase(blur: float, noise: float, max_bias: float, max_spread: float) -> None:
    edges = np.repeat(np.linspace(-0.5, 0.5, 41), 25)  # every phase, 25 noisy copies each
    fits = fit_steps(pixel_steps(edges, blur, noise=noise), WINDOW, edges + 0.6)
    error = fits.mu - edges
    assert fits.ok.all()
    per_phase_bias = error.reshape(41, 25).mean(axis=1)
    assert np.abs(per_phase_bias).max() < max_bias + 3 * noise * 0.01
    assert error.std() < max_spread
    if noise:
        # The predicted standard error matches the observed spread within 30 %.
        assert np.median(fits.mu_std) == pytest.approx(error.std(), rel=0.3)


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (np.full((1, WINDOW.size), 120.0), "flat: no step"),
        (120 + np.random.default_rng(1).normal(0, 1, (1, WINDOW.size)), "noise only"),
        (np.where(WINDOW < 0, 120.0, 124.0)[None, :], "a step of 4 levels is below the 8-level floor"),
    ],
)
def test_profiles_without_an_edge_are_rejected(values: np.ndarray, reason: str) -> None:
    assert not fit_steps(values, WINDOW, np.zeros(1)).ok.any(), reason


def test_falling_steps_are_found_too() -> None:
    edges = np.array([-1.3, 0.2, 2.7])
    fits = fit_steps(pixel_steps(edges, 0.8, low=230, high=30), WINDOW, np.zeros(3))
    assert np.abs(fits.mu - edges).max() < 0.005
    assert (fits.step < 0).all()
