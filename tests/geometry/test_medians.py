"""The fast medians give NumPy's numbers exactly, NaNs and empty arrays included."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from cardmetry.geometry.medians import median, nanmedian


@pytest.mark.parametrize(
    ("shape", "axis", "nan_share"),
    [
        ((40, 25), 1, 0.3),  # profiles by samples, with gaps: the edge searches' case
        ((40, 25, 3), 1, 0.3),  # colour profiles, the median along the samples
        ((7, 9), 0, 0.0),  # along the first axis, no NaN
        ((6, 4), 1, 1.0),  # every value NaN: NaN throughout
        ((5, 0), 1, 0.0),  # nothing to take the median of
        ((1, 1), 1, 0.0),  # a single value
        ((3, 700), 1, 0.1),  # longer than NumPy's small-array path
    ],
)
def test_nanmedian_is_numpys(shape: tuple[int, ...], axis: int, nan_share: float) -> None:
    rng = np.random.default_rng(len(shape) * 100 + shape[-1])
    values = rng.normal(size=shape)
    values[rng.random(shape) < nan_share] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy warns of all-NaN slices
        expected = np.nanmedian(values, axis=axis)
    assert np.array_equal(nanmedian(values, axis), expected, equal_nan=True)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([3.0, 1.0, 2.0], 2.0),  # odd count: the middle value
        ([4.0, 1.0, 2.0, 3.0], 2.5),  # even count: the mean of the two middle values
        ([0.1, 0.7], 0.4),  # rounding as NumPy's mean of two
        ([1.0, np.nan, 3.0], np.nan),  # a NaN makes it NaN, as np.median
        ([], np.nan),  # empty
    ],
)
def test_median_is_numpys(values: list[float], expected: float) -> None:
    got = median(np.array(values))
    assert got == pytest.approx(expected, nan_ok=True)
    if len(values):
        assert got == float(np.median(values)) or (np.isnan(got) and np.isnan(np.median(values)))
