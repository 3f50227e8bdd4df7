"""Sub-pixel edges on analytic step images whose edge position is known exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cardmetry.geometry.edges import (
    Profiles,
    bilinear_sample,
    colour_distance,
    default_normal,
    fit_line_robust,
    locate_edges,
    sample_profiles,
    segment_positions,
)
from cardmetry.geometry.lines import signed_distance

_erf = np.vectorize(math.erf)
LOW, HIGH = 40.0, 200.0


def step_image(
    angle_deg: float, position: float, *, blur: float = 0.0, noise: float = 0.0, size: int = 160, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A straight step edge: LOW where the signed distance d = x cos a + y sin a - position is negative, HIGH
    beyond. Without blur it is the anti-aliased ramp LOW + (HIGH - LOW) * clip(0.5 + d, 0, 1); with blur the
    step is blurred analytically (an erf), which keeps the rendering exact at any angle. Returns the image and
    the unit normal (pointing from LOW to HIGH)."""
    normal = np.array([math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))])
    y, x = np.mgrid[0:size, 0:size].astype(float)
    d = x * normal[0] + y * normal[1] - position
    share = np.clip(0.5 + d, 0, 1) if blur == 0 else 0.5 * (1 + _erf(d / (blur * math.sqrt(2))))
    image = LOW + (HIGH - LOW) * share
    if noise:
        image = image + np.random.default_rng(seed).normal(0, noise, image.shape)
    return image, normal


def profiles_across(
    image: np.ndarray, normal: np.ndarray, position: float, start_off: float = 0.3, **kwargs: object
) -> Profiles:
    """Profiles square to the edge, 100 px long, their offset 0 lying `start_off` px past the edge."""
    centre = np.array([image.shape[1], image.shape[0]], float) / 2
    foot = centre - (centre @ normal - position) * normal + start_off * normal
    along = np.array([-normal[1], normal[0]])
    return sample_profiles(image, foot - 50 * along, foot + 50 * along, normal=normal, **kwargs)


def _values_offsets(profiles: Profiles) -> tuple[np.ndarray, np.ndarray]:
    return profiles.values, profiles.offsets


def test_bilinear_sampling_reproduces_an_affine_image_and_is_nan_outside() -> None:
    y, x = np.mgrid[0:20, 0:30].astype(float)
    image = 3 * x - 2 * y + 7
    points = np.array([[0.25, 0.5], [28.9, 18.1], [29.0, 19.0], [-0.01, 3.0], [5.0, 19.5]])
    values = bilinear_sample(image, points)
    np.testing.assert_allclose(values[:3], 3 * points[:3, 0] - 2 * points[:3, 1] + 7)
    assert np.isnan(values[3:]).all()


def test_bilinear_sampling_keeps_colour_channels() -> None:
    image = np.dstack([np.full((4, 4), 10.0), np.full((4, 4), 20.0), np.full((4, 4), 30.0)])
    np.testing.assert_allclose(bilinear_sample(image, np.array([[1.5, 2.5]])), [[10.0, 20.0, 30.0]])


def test_segment_positions_stay_clear_of_the_ends_and_are_centred() -> None:
    points = segment_positions(np.array([0.0, 5.0]), np.array([100.0, 5.0]), spacing=3.0, margin=10.0)
    assert points[0, 0] >= 10 and points[-1, 0] <= 90
    assert np.allclose(np.diff(points[:, 0]), 3.0) and np.allclose(points[:, 1], 5.0)
    assert points[0, 0] - 10 == pytest.approx(90 - points[-1, 0])
    assert len(segment_positions(np.zeros(2), np.array([10.0, 0.0]), spacing=1.0, margin=6.0)) == 0


def test_default_normal_points_into_a_clockwise_quad() -> None:
    tl, tr, br, bl = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 20.0], [0.0, 20.0]])
    centre = np.array([5.0, 10.0])
    for p0, p1 in ((tl, tr), (tr, br), (br, bl), (bl, tl)):
        assert default_normal(p0, p1) @ (centre - (p0 + p1) / 2) > 0


def test_profiles_have_one_row_per_position_and_one_column_per_offset() -> None:
    image = np.zeros((50, 60, 3))
    profiles = sample_profiles(
        image, np.array([10.0, 10.0]), np.array([50.0, 10.0]), offset_range=(-4, 6), offset_step=0.5, margin=5
    )
    assert profiles.values.shape == (31, 21, 3)
    assert profiles.offsets[0] == -4 and profiles.offsets[-1] == 6
    np.testing.assert_allclose(profiles.normal, [0.0, 1.0])
    np.testing.assert_allclose(profiles.points_at(np.full(31, 2.0))[:, 1], 12.0)


@pytest.mark.parametrize(
    ("sampling", "tolerance"),
    [
        ("remap", 1 / 32 + 1e-3),  # OpenCV's fixed-point weights: positions quantised to 1/32 px
        ("nearest", 0.5 + 1e-9),  # the nearest pixel's value: up to half a pixel of a unit ramp
    ],
)
def test_fast_sampling_agrees_with_exact_and_is_nan_outside(sampling: str, tolerance: float) -> None:
    ramp = np.tile(np.arange(60, dtype=np.float32), (50, 1))  # value = x
    p0, p1 = np.array([10.3, 5.0]), np.array([12.1, 45.0])
    options = {"offset_range": (-15.0, 55.0), "offset_step": 0.37, "spacing": 1.3, "margin": 0.0}
    exact = sample_profiles(ramp, p0, p1, **options)
    fast = sample_profiles(ramp, p0, p1, sampling=sampling, **options)
    assert np.array_equal(np.isnan(exact.values), np.isnan(fast.values)) and np.isnan(exact.values).any()
    assert np.nanmax(np.abs(fast.values - exact.values)) <= tolerance


@pytest.mark.parametrize(
    ("angle", "blur"),
    [
        (0.0, 0.0),  # axis-aligned sharp ramp: the worst case for pixel locking
        (0.7, 0.0),  # the slight tilt of a card on a scanner
        (3.0, 0.0),
        (10.0, 0.0),
        (-6.0, 0.0),  # tilted the other way
        (90.0, 0.0),  # a horizontal edge, profiles down the columns
        (30.0, 0.5),  # steep angles are rendered blurred: a sharp ramp sampled at pixel centres is aliased there
        (45.0, 0.7),
        (135.0, 1.0),  # edge whose high side faces up-left
        (0.0, 1.5),  # a soft, out-of-focus edge
    ],
)
def test_edge_is_located_to_within_five_hundredths_of_a_pixel(angle: float, blur: float) -> None:
    for fraction in np.linspace(0, 1, 7, endpoint=False):
        normal = np.array([math.cos(math.radians(angle)), math.sin(math.radians(angle))])
        position = np.array([80.0, 80.0]) @ normal + fraction  # through the image centre, at every sub-pixel phase
        image, normal = step_image(angle, position, blur=blur)
        profiles = profiles_across(image, normal, position, offset_range=(-8, 8))
        hits = locate_edges(profiles.values, profiles.offsets)
        assert hits.found.all()
        assert np.max(np.abs(hits.offsets + 0.3)) < 0.05


def test_aliasing_of_a_steep_sharp_ramp_averages_out_along_the_edge() -> None:
    """A sharp ramp at 30 degrees is aliased by its rendering: single profiles are off by up to 0.1 px, but a
    line fit sees their mean."""
    for fraction in np.linspace(0, 1, 5, endpoint=False):
        image, normal = step_image(30.0, 100 + fraction)
        hits = locate_edges(*_values_offsets(profiles_across(image, normal, 100 + fraction, offset_range=(-8, 8))))
        assert abs(np.mean(hits.offsets + 0.3)) < 0.05


def test_noise_scatters_the_edge_but_does_not_bias_it() -> None:
    image, normal = step_image(2.0, 80.4, blur=0.8, noise=4.0, seed=3)
    hits = locate_edges(*_values_offsets(profiles_across(image, normal, 80.4, offset_range=(-8, 8))))
    assert hits.found.mean() > 0.99
    errors = hits.offsets + 0.3
    assert abs(np.mean(errors)) < 0.02 and np.std(errors) < 0.15


def _profile(*levels: tuple[float, int]) -> np.ndarray:
    """A 1-row profile of flat stretches (level, length in samples)."""
    return np.concatenate([np.full(length, float(level)) for level, length in levels])[None, :]


@pytest.mark.parametrize(
    ("polarity", "select", "share", "expected"),
    [
        (0, "strongest", 0.0, 30.0),  # the big fall (200 -> 20) beats the small rise (20 -> 60)
        (0, "first", 0.0, 10.0),  # scanning from the start, the small rise comes first
        (1, "strongest", 0.0, 20.0),  # only rises count: the bigger rise
        (-1, "first", 0.0, 30.0),  # only falls count: the first fall is the only one
        (0, "first", 0.5, 20.0),  # the first edge at least half as strong as the strongest: 60 -> 200
    ],
)
def test_polarity_and_selection_pick_the_intended_edge(
    polarity: int, select: str, share: float, expected: float
) -> None:
    values = _profile((20, 20), (60, 20), (200, 20), (20, 30))  # rise 40 at 10, rise 140 at 20, fall 180 at 30
    offsets = np.arange(values.shape[1]) * 0.5
    hits = locate_edges(values, offsets, polarity=polarity, select=select, min_share_of_strongest=share, sigma_px=1.0)
    assert hits.offsets[0] == pytest.approx(expected - 0.25, abs=0.02)  # steps sit halfway between samples


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        (22.0, -2.0),  # offset 0 (a model's edge) lies nearest the middle step, not the first or the strongest
        (9.0, 1.0),  # nearest the first step
        (33.0, -3.0),  # nearest the last step
    ],
)
def test_nearest_selection_takes_the_step_nearest_offset_zero(origin: float, expected: float) -> None:
    values = _profile((20, 20), (60, 20), (200, 20), (20, 30))  # steps at 10, 20 and 30
    offsets = np.arange(values.shape[1]) * 0.5 - origin
    hits = locate_edges(values, offsets, select="nearest", sigma_px=1.0)
    assert hits.offsets[0] == pytest.approx(expected - 0.25, abs=0.02)


def test_search_range_keeps_candidates_inside_it() -> None:
    values = _profile((20, 20), (200, 20), (20, 30))
    offsets = np.arange(values.shape[1]) * 0.5
    hits = locate_edges(values, offsets, search_range=(15.0, 40.0))
    assert hits.offsets[0] == pytest.approx(19.75, abs=0.02)


@pytest.mark.parametrize(
    ("values", "kwargs"),
    [
        (_profile((50, 60)), {}),  # flat: nothing to find
        (_profile((50, 30), (53, 30)), {"min_gradient": 2.0}),  # a 3-level step is below the contrast asked for
        (np.full((1, 60), np.nan), {}),  # the profile lies outside the image
        (_profile((50, 30), (200, 30)), {"search_range": (0.0, 10.0)}),  # the edge is outside the range searched
    ],
)
def test_no_edge_gives_nan(values: np.ndarray, kwargs: dict) -> None:
    hits = locate_edges(values, np.arange(values.shape[1]) * 0.5, **kwargs)
    assert not hits.found.any() and np.isnan(hits.gradient).all() and np.isnan(hits.snr).all()


def test_an_edge_drowned_in_noise_is_not_reported() -> None:
    rng = np.random.default_rng(1)
    values = _profile((100, 40), (106, 40)) + rng.normal(0, 6, (1, 80))
    assert not locate_edges(values, np.arange(80) * 0.5, min_snr=6).found.any()


def test_signal_to_noise_is_reported() -> None:
    image, normal = step_image(1.0, 80.2, blur=0.8, noise=2.0)
    hits = locate_edges(*_values_offsets(profiles_across(image, normal, 80.2, offset_range=(-8, 8))))
    assert np.median(hits.snr) > 20 and np.all(hits.gradient > 0)


def test_colour_edge_of_equal_brightness_is_found_across_channels() -> None:
    share, normal = step_image(4.0, 80.6, blur=0.8)
    share = (share - LOW) / (HIGH - LOW)
    red, blue = np.array([180.0, 40.0, 40.0]), np.array([40.0, 40.0, 180.0])  # same grey level
    image = red + share[..., None] * (blue - red)
    profiles = profiles_across(image, normal, 80.6, offset_range=(-8, 8))
    hits = locate_edges(profiles.values, profiles.offsets)
    assert np.max(np.abs(hits.offsets + 0.3)) < 0.05
    with pytest.raises(ValueError, match="polarity"):
        locate_edges(profiles.values, profiles.offsets, polarity=1)


def test_colour_distance_grows_linearly_across_a_blend() -> None:
    a, b = np.array([200.0, 30.0, 30.0]), np.array([30.0, 30.0, 200.0])
    blend = np.linspace(0, 1, 11)
    values = (a + blend[:, None] * (b - a))[None]
    np.testing.assert_allclose(colour_distance(values, a[None])[0], blend * np.linalg.norm(b - a))


truth_ends = np.array([[0.0, 250.3], [800.0, 250.3 + 0.013 * 800]])  # the line the points scatter about


def _points_on_line(count: int, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 800, count)
    return np.c_[x, 0.013 * x + 250.3 + rng.normal(0, noise, count)]


@pytest.mark.parametrize(
    ("outlier_share", "spread"),
    [
        (0.0, 10.0),  # clean points
        (0.3, 30.0),  # art crossing the frame: points anywhere in a 60 px band
        (0.3, 3.0),  # a sleeve edge or shadow a few pixels off: the hard case for a least-squares fit
        (0.45, 20.0),  # nearly half the side covered
    ],
)
def test_robust_fit_rejects_outliers(outlier_share: float, spread: float) -> None:
    rng = np.random.default_rng(7)
    points = _points_on_line(600, noise=0.2, seed=7)
    outliers = rng.random(len(points)) < outlier_share
    points[outliers, 1] += rng.uniform(2.0, spread, outliers.sum()) * rng.choice([-1, 1], outliers.sum())
    fit = fit_line_robust(points)
    assert np.max(np.abs(signed_distance(fit.line, truth_ends))) < 0.05
    assert not fit.inliers[outliers].any()
    assert fit.count >= 0.95 * (~outliers).sum()
    assert fit.rms_px == pytest.approx(0.2, abs=0.04)
    assert np.hypot(*fit.line[:2]) == pytest.approx(1.0)


def test_robust_fit_ignores_nan_points_and_reports_their_residual_as_nan() -> None:
    points = _points_on_line(100, noise=0.0, seed=0)
    points[::10] = np.nan
    fit = fit_line_robust(points)
    assert np.isnan(fit.residuals[::10]).all() and not fit.inliers[::10].any()
    assert fit.count == 90 and fit.rms_px < 1e-9


def test_robust_fit_needs_two_distinct_points() -> None:
    with pytest.raises(ValueError, match="two"):
        fit_line_robust(np.array([[1.0, 2.0], [np.nan, 3.0]]))
    with pytest.raises(ValueError, match="distinct"):
        fit_line_robust(np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]]))

