"""Timing for the benchmarks: the best of a few runs of one call."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
TIMING_REPEATS = 3


def timed(call: Callable[[], T], repeats: int = TIMING_REPEATS) -> tuple[T, float]:
    """The call's result and its best time in ms over `repeats` runs: on a shared virtual machine the best run is
    the cost of the work itself, the others add whatever else the machine was doing."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        best = min(best, (time.perf_counter() - start) * 1000)
    return result, best
