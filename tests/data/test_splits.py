"""Reproducible splits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardmetry.data.splits import split_indices


@given(st.lists(st.text(min_size=1, max_size=8), min_size=0, max_size=60, unique=True), st.integers(0, 10))
def test_split_is_a_partition_with_sizes_from_the_ratios(keys: list[str], seed: int) -> None:
    splits = split_indices(keys, (0.8, 0.1, 0.1), seed)
    members = sorted(i for group in splits.values() for i in group)
    assert members == list(range(len(keys)))
    assert abs(len(splits["train"]) - 0.8 * len(keys)) < 1


def test_split_ignores_file_order_and_follows_the_seed() -> None:
    keys = [f"sha{i:03d}" for i in range(50)]
    forward = split_indices(keys, (0.7, 0.3), seed=1)
    backward = split_indices(list(reversed(keys)), (0.7, 0.3), seed=1)
    assert {keys[i] for i in forward["val"]} == {list(reversed(keys))[i] for i in backward["val"]}
    assert forward != split_indices(keys, (0.7, 0.3), seed=2)


@pytest.mark.parametrize(
    "ratios",
    [
        (0.0, 0.0),  # nothing to split into
        (-0.1, 1.1),  # negative share
        (0.5, 0.2, 0.2, 0.1),  # four splits: only train, val and test exist
    ],
)
def test_bad_ratios(ratios: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="ratios"):
        split_indices(["a", "b"], ratios)
