"""Benchmark: synthetic cards per second at 300 and 600 dpi (and a phone photo), single process and the
machine's worker pool, side by side in one run.

    .venv/bin/python bench/synth_speed.py [--count 12]

Prints a markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

from cardmetry.data.synth.dataset import SynthOptions, iter_synth


def cards_per_second(options: SynthOptions, workers: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        for _ in iter_synth(Path(tmp), options, workers):
            pass
        return options.count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=12)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    cases = [
        ("scan 300 dpi", SynthOptions(count=args.count, seed=1, dpi=300)),
        ("scan 600 dpi", SynthOptions(count=args.count, seed=1, dpi=600)),
        ("scan 600 dpi, supersample 1", SynthOptions(count=args.count, seed=1, dpi=600, supersample=1)),
        ("phone photo (12-20 px/mm)", SynthOptions(count=args.count, seed=1, photo=True)),
    ]
    print(f"Machine: {platform.machine()}, {cores} cores, Python {platform.python_version()}; {date.today()}")
    print(f"Command: .venv/bin/python bench/synth_speed.py --count {args.count}\n")
    print(f"| case | cards/s, 1 process | cards/s, {cores} processes | ratio |")
    print("| --- | --- | --- | --- |")
    for name, options in cases:
        one = cards_per_second(options, 1)
        many = cards_per_second(options, cores)
        print(f"| {name} | {one:.2f} | {many:.2f} | {many / one:.2f}x |")


if __name__ == "__main__":
    main()
