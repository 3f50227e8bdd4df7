"""The blurred-step fit: unbiased for any sub-pixel phase, honest about its own uncertainty; a printed rule's bar fitted
as a bar, its width measured from many profiles together."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtr

from cardmetry.geometry.stepfit import fit_pooled_bar, fit_steps, pooled_costs

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


def pixel_bars(
    edges: np.ndarray, blur: float, width: float, art: np.ndarray, window: np.ndarray, noise: float = 1.0, seed: int = 0
) -> np.ndarray:
    """What pixels centred at `window` record of a white border (230), a dark rule (20) from each edge to edge +
    width, and art at each profile's own level beyond: integrated on a fine grid, independently of the model."""
    fine = np.linspace(-0.5, 0.5, 201)
    x = window[None, :, None] + fine[None, None, :]
    e, level = edges[:, None, None], art[:, None, None]
    blurred = 230 - 210 * ndtr((x - e) / blur) + (level - 20) * ndtr((x - e - width) / blur)
    values = np.trapezoid(blurred, fine, axis=2)
    return values + np.random.default_rng(seed).normal(0, noise, values.shape)


BAR_WINDOW = np.arange(-6, 8, dtype=float)


@pytest.mark.parametrize("blur", [0.6, 1.0])
def test_a_rule_beside_the_edge_is_fitted_as_a_bar(blur: float) -> None:
    # A rule two pixels wide, as a 0.17 mm rule is at 300 dpi: its far side is inside any window that holds the edge.
    rng = np.random.default_rng(2)
    edges, art = rng.uniform(-0.5, 0.5, 400), rng.uniform(60, 220, 400)
    values = pixel_bars(edges, blur, 2.0, art, BAR_WINDOW)
    bar = fit_steps(values, BAR_WINDOW, edges + 0.5, sigma0=blur, bar_width=2.0)
    assert bar.ok.all()
    assert abs(np.mean(bar.mu - edges)) < 0.01 and np.std(bar.mu - edges) < 0.05
    step = fit_steps(values, BAR_WINDOW, edges + 0.5, sigma0=blur)
    assert np.nanmean(np.abs(step.mu - edges)) > 0.2  # a step alone is misled by the bar


def test_a_wide_rule_has_its_width_fitted_in_each_profile() -> None:
    rng = np.random.default_rng(3)
    edges, art = rng.uniform(-0.5, 0.5, 200), rng.uniform(60, 220, 200)
    window = np.arange(-6, 11, dtype=float)
    values = pixel_bars(edges, 0.7, 5.3, art, window)
    fits = fit_steps(values, window, edges + 0.3, sigma0=0.7, bar_width=5.0, fit_bar_width=True)
    assert fits.ok.all()
    assert abs(np.median(fits.bar_width) - 5.3) < 0.05
    assert abs(np.mean(fits.mu - edges)) < 0.01


@pytest.mark.parametrize("fit_sigma", [True, False])
def test_a_pooled_fit_measures_a_narrow_rule(fit_sigma: bool) -> None:
    # Profiles at every sub-pixel phase and with art of every level tell the width from the blur, which no single
    # profile of a two-pixel bar does.
    rng = np.random.default_rng(4)
    n = 64
    centres = rng.uniform(-0.5, 0.5, n)
    positions = np.rint(centres)[:, None] + np.arange(-9, 10, dtype=float)
    truth = centres + 0.8  # the edge lies 0.8 px from each profile's centre
    fine = np.linspace(-0.5, 0.5, 201)
    x, e = positions[:, :, None] + fine, truth[:, None, None]
    art = rng.uniform(60, 220, n)[:, None, None]
    profile = 230 - 210 * ndtr((x - e) / 0.9) + (art - 20) * ndtr((x - e - 2.0) / 0.9)
    values = np.trapezoid(profile, fine, axis=2) + rng.normal(0, 1.5, positions.shape)
    bar = fit_pooled_bar(values, positions, centres, 0.5, 2.5, 0.9 if not fit_sigma else 0.7, fit_sigma=fit_sigma)
    assert bar.offset == pytest.approx(0.8, abs=0.03)
    assert bar.width == pytest.approx(2.0, abs=0.05)
    assert bar.sigma == pytest.approx(0.9, rel=0.05)
    assert bar.heights.shape == (n, 2, 1)


def test_pooled_costs_tell_a_bar_from_a_step() -> None:
    rng = np.random.default_rng(5)
    centres = rng.uniform(-0.5, 0.5, 32)
    positions = np.rint(centres)[:, None] + np.arange(-8, 9, dtype=float)
    art = rng.uniform(60, 220, 32)
    bars = np.stack([pixel_bars(np.array([c]), 0.8, 2.5, art[k : k + 1], positions[k]) for k, c in enumerate(centres)])
    steps = np.stack([pixel_steps_at(c, positions[k], art[k]) for k, c in enumerate(centres)])
    anchors, offsets = np.array([-0.5, 0.0, 0.5]), np.arange(-6, 6.1, 0.5)
    for values, is_bar in ((bars[:, 0], True), (steps, False)):
        single, pair = pooled_costs(values, positions, centres, 0.8, offsets, anchors)
        gain = 1 - pair.min() / single.min()
        assert (gain > 0.5) if is_bar else (gain < 0.2), gain
    _, pair = pooled_costs(bars[:, 0], positions, centres, 0.8, offsets, anchors)
    i, j = np.unravel_index(np.argmin(pair), pair.shape)
    assert (anchors[i], offsets[j]) == (0.0, 2.5)


def pixel_steps_at(edge: float, positions: np.ndarray, level: float, noise: float = 1.0) -> np.ndarray:
    """A plain step from the border (230) to art at `level`, as pixels at `positions` record it."""
    fine = np.linspace(-0.5, 0.5, 201)
    x = positions[:, None] + fine
    values = np.trapezoid(230 + (level - 230) * ndtr((x - edge) / 0.8), fine, axis=1)
    return values + np.random.default_rng(int(level)).normal(0, noise, values.shape)
