"""Measurement accuracy and speed on renders the tests never use, side by side with a naive hobby-tool method.

    .venv/bin/python bench/measure_accuracy.py [--count 24] [--workers 2]

Three capture kinds, each on fresh seeds: flatbed scans at 600 and 300 dpi (rotation up to 5 deg, print skew up
to 1 deg, blur sigma 0.5 to 1.0 px, noise, JPEG 90, sleeves and toploaders) and phone photos (perspective, 12 to
20 px/mm, uneven light). Each card is measured three ways on the same pixels:

- classical: `measure_image`, the whole path without models (coarse borders found classically, then refined);
- engine: `measure_borders` from the true quads with every corner moved up to 1.5 px, what a model gives;
- naive: what hobby tools do: Otsu threshold, the largest contour's bounding rectangle as the card, the bounding
  rectangle of what differs from the border colour as the art, widths in whole pixels, one per side.

Renders run in worker processes first; measurements then run one at a time in this process, so the timings are
not disturbed by rendering. Each card's time is the best of 3 runs; the table gives the median over cards.
Prints the figures and writes them to bench/results/measure_accuracy.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from timing import timed  # bench/timing.py: scripts run from bench/ import it directly

from cardmetry.data.synth import render, sample_scene
from cardmetry.geometry.specs import STANDARD
from cardmetry.measure.engine import measure_borders
from cardmetry.measure.pipeline import measure_image
from cardmetry.measure.result import Measurement, Refusal

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "measure_accuracy.md"
KINDS = {  # name: (first seed, sample_scene options); seeds far from any the tests use
    "scan 600 dpi": (910_000, {"dpi": 600}),
    "scan 300 dpi": (920_000, {"dpi": 300}),
    "phone photo": (930_000, {"photo": True}),
}
COARSE_JITTER_PX = 1.5


@dataclass
class Figures:
    """Errors of one method on one capture kind."""

    errors_mm: list[float] = field(default_factory=list)  # measured minus true width, every station
    z_scores: list[float] = field(default_factory=list)  # error over the reported 1-sigma uncertainty
    centering_pp: list[float] = field(default_factory=list)  # |left share error|, |top share error| per card
    worst_pp: list[float] = field(default_factory=list)  # the worst station's larger share against the truth's
    milliseconds: list[float] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    wrong_accepts: list[str] = field(default_factory=list)  # measured, with a station off by more than 0.1 mm

    @property
    def measured(self) -> int:
        return len(self.centering_pp) // 2

    def row(self) -> dict[str, str]:
        e = np.abs(self.errors_mm)
        z = np.abs(self.z_scores)
        return {
            "measured": f"{self.measured} / {self.measured + len(self.refusals)}",
            "MAE mm": f"{e.mean():.4f}" if len(e) else "-",
            "p95 mm": f"{np.percentile(e, 95):.4f}" if len(e) else "-",
            "max mm": f"{e.max():.4f}" if len(e) else "-",
            "centering err pp, mean / max": f"{np.mean(self.centering_pp):.3f} / {np.max(self.centering_pp):.3f}"
            if self.centering_pp
            else "-",
            "worst-station err pp, max": f"{np.max(self.worst_pp):.3f}" if self.worst_pp else "-",
            "within 1 / 2 sigma": f"{np.mean(z <= 1):.0%} / {np.mean(z <= 2):.0%}" if len(z) else "-",
            "ms per card, median": f"{np.median(self.milliseconds):.0f}" if self.milliseconds else "-",
        }


def rendered_cards(kind: str, count: int, workers: int) -> Iterator[tuple[int, object]]:
    first, options = KINDS[kind]
    seeds = [first + i for i in range(count)]
    with ProcessPoolExecutor(workers) as pool:
        yield from zip(seeds, pool.map(_render, [(seed, options) for seed in seeds]), strict=True)


def _render(args: tuple[int, dict]) -> object:
    seed, options = args
    return render(sample_scene(seed, **options))


def score(figures: Figures, result: Measurement | Refusal, truth: object, seed: int, ms: float) -> None:
    """Add one card's result to a method's figures."""
    if isinstance(result, Refusal):
        figures.refusals.append(f"seed {seed}: {result.reason}")
        return
    true_widths = {w.station.id: w.border_mm for w in truth.widths}
    errors = [p.border_mm - true_widths[p.id] for p in result.points]
    figures.errors_mm.extend(errors)
    figures.z_scores.extend(
        e / p.uncertainty_mm for e, p in zip(errors, result.points, strict=True) if p.uncertainty_mm
    )
    for axis in ("left_right", "top_bottom"):
        figures.centering_pp.append(abs(result.centering[axis][0] - truth.centering[axis][0]))
        worst = f"worst_{axis}"
        figures.worst_pp.append(abs(max(result.centering[worst]["ratio"]) - max(truth.centering[worst]["ratio"])))
    figures.milliseconds.append(ms)
    if max(abs(e) for e in errors) > 0.1:
        figures.wrong_accepts.append(f"seed {seed}: worst station off by {max(errors, key=abs):+.3f} mm")


def naive_measure(image: np.ndarray) -> dict[str, float] | None:
    """Border widths per side (mm) the way hobby tools measure them, or None where the method finds nothing."""
    grey = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (5, 5), 0)
    _, mask = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    x, y, w, h = cv2.boundingRect(max(contours, key=cv2.contourArea))
    if w < 10 or h < 10:
        return None
    if w > h:  # the method assumes the card stands portrait in the picture
        return None
    px_per_mm = (w / STANDARD.width_mm + h / STANDARD.height_mm) / 2
    card = image[y : y + h, x : x + w].astype(np.float32)
    strip = max(2, int(0.6 * px_per_mm))
    inset = max(1, int(0.3 * px_per_mm))
    ring = np.concatenate(
        [
            card[inset : inset + strip, inset:-inset].reshape(-1, 3),
            card[-inset - strip : -inset, inset:-inset].reshape(-1, 3),
            card[inset:-inset, inset : inset + strip].reshape(-1, 3),
            card[inset:-inset, -inset - strip : -inset].reshape(-1, 3),
        ]
    )
    distance = np.linalg.norm(card - np.median(ring, axis=0), axis=2)
    art = (distance > 40).astype(np.uint8)
    art[:inset], art[-inset:], art[:, :inset], art[:, -inset:] = 0, 0, 0, 0
    inner, _ = cv2.findContours(art, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not inner:
        return None
    gx, gy, gw, gh = cv2.boundingRect(max(inner, key=cv2.contourArea))
    return {
        "left": gx / px_per_mm,
        "right": (w - gx - gw) / px_per_mm,
        "top": gy / px_per_mm,
        "bottom": (h - gy - gh) / px_per_mm,
    }


def score_naive(figures: Figures, image: np.ndarray, truth: object, seed: int) -> None:
    sides, ms = timed(lambda: naive_measure(image))
    if sides is None:
        figures.refusals.append(f"seed {seed}: nothing found")
        return
    errors = [sides[w.station.edge] - w.border_mm for w in truth.widths]
    figures.errors_mm.extend(errors)
    lr = 100 * sides["left"] / (sides["left"] + sides["right"])
    tb = 100 * sides["top"] / (sides["top"] + sides["bottom"])
    figures.centering_pp += [abs(lr - truth.centering["left_right"][0]), abs(tb - truth.centering["top_bottom"][0])]
    figures.milliseconds.append(ms)


def run_kind(kind: str, count: int, workers: int) -> dict[str, Figures]:
    methods = {"classical": Figures(), "engine": Figures(), "naive": Figures()}
    cards = list(rendered_cards(kind, count, workers))  # all renders first: timings below run alone
    for seed, rendered in cards:
        truth = rendered.truth
        result, ms = timed(lambda: measure_image(rendered.image, STANDARD, name=f"seed {seed}"))  # noqa: B023
        score(methods["classical"], result, truth, seed, ms)
        rng = np.random.default_rng(seed)
        outer = truth.outer_quad_px + rng.uniform(-COARSE_JITTER_PX, COARSE_JITTER_PX, (4, 2))
        graphic = truth.graphic_quad_px + rng.uniform(-COARSE_JITTER_PX, COARSE_JITTER_PX, (4, 2))
        result, ms = timed(lambda: measure_borders(rendered.image, outer, graphic, STANDARD))  # noqa: B023
        score(methods["engine"], result, truth, seed, ms)
        score_naive(methods["naive"], rendered.image, truth, seed)
    return methods


def report(all_figures: dict[str, dict[str, Figures]], count: int, seconds: float) -> str:
    columns = list(Figures().row())
    lines = [
        "### Measurement accuracy on fresh renders",
        "",
        f"Command: `.venv/bin/python bench/measure_accuracy.py --count {count}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, CPU only; Python {platform.python_version()}; "
        f"{dt.date.today().isoformat()}; {seconds / 60:.1f} min in all.",
        "",
        "Errors are measured minus true border width at all 24 stations of every measured card. Centering error is "
        "the mean ratio's left (or top) share against the truth's, in percentage points; the worst-station error "
        "compares the larger share of the worst opposing pair. Sigma is each station's reported uncertainty.",
        "",
        "| kind | method | " + " | ".join(columns) + " |",
        "| --- | --- | " + " | ".join("---" for _ in columns) + " |",
    ]
    notes = []
    for kind, methods in all_figures.items():
        for name, figures in methods.items():
            lines.append(f"| {kind} | {name} | " + " | ".join(figures.row().values()) + " |")
            notes += [f"- {kind}, {name}, refused: {r}" for r in figures.refusals]
            notes += [f"- {kind}, {name}, measured wrongly: {r}" for r in figures.wrong_accepts]
        ours, naive = methods["classical"], methods["naive"]
        if ours.errors_mm and naive.errors_mm:
            ratio = np.mean(np.abs(naive.errors_mm)) / np.mean(np.abs(ours.errors_mm))
            notes.append(f"- {kind}: naive MAE / classical MAE = {ratio:.0f}x")
    return "\n".join([*lines, "", *notes, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=24, help="cards per capture kind")
    parser.add_argument("--workers", type=int, default=2, help="render processes")
    parser.add_argument("--kinds", nargs="*", default=list(KINDS), choices=list(KINDS))
    args = parser.parse_args()
    start = time.perf_counter()
    figures = {kind: run_kind(kind, args.count, args.workers) for kind in args.kinds}
    text = report(figures, args.count, time.perf_counter() - start)
    print(text)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
