"""Measuring with the trained models against the classical path, side by side on the same pixels.

    .venv/bin/python bench/measure_with_models.py --outer RUN --graphic RUN [--home bench/.data/home]

Both runs are exported to ONNX first (when they have no model.onnx yet) and measured through onnxruntime, as
`cardmetry measure --outer-model RUN --graphic-model RUN` does. Three sets, none of them seen in training:
- held-out renders (bench/.data/synth-val: 24 flatbed scans at 600 dpi, 12 phone photos) against their exact
  truth: measured, refused, error per station;
- held-out real scans (bench/.data/real-val, 14 scans): measured or refused, and each station against the
  measurement from the scan's refined label quads where those measure (the labels are loose boxes refined onto
  the edges: a reference, not sub-pixel truth);
- the other 33 real scans (seen in training, so only the yield is reported).
Times are the best of 3 runs per card, then the median over cards; one thread each for torch and onnxruntime is
not forced, both use the machine. Writes bench/results/measure_with_models.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from timing import timed  # bench/timing.py: scripts run from bench/ import it directly

from cardmetry.data.formats import read_dataset
from cardmetry.data.images import load_image
from cardmetry.data.instances import GRAPHIC, OUTER, label_to_cv
from cardmetry.data.refine import RefinementRefusal, refine_image
from cardmetry.geometry.specs import STANDARD
from cardmetry.measure.engine import measure_borders
from cardmetry.measure.pipeline import measure_image
from cardmetry.measure.result import Measurement
from cardmetry.models.export import export_checkpoint
from cardmetry.models.measuring import measure_with_models
from cardmetry.models.predictors import OnnxPredictor
from cardmetry.store.home import Home
from cardmetry.store.models import run_checkpoint
from cardmetry.training.runs import RunDir

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "bench" / ".data"
RESULTS = REPO / "bench" / "results" / "measure_with_models.md"


@dataclass
class Tally:
    measured: int = 0
    refused: list[str] = field(default_factory=list)
    errors_mm: list[float] = field(default_factory=list)
    milliseconds: list[float] = field(default_factory=list)
    names_measured: set[str] = field(default_factory=set)

    def line(self, label: str) -> str:
        n = self.measured + len(self.refused)
        errors = np.abs(self.errors_mm)
        accuracy = (f"{np.mean(errors):.4f} | {np.percentile(errors, 95):.4f} | {np.max(errors):.4f}" if len(errors)
                    else "- | - | -")
        time = f"{np.median(self.milliseconds):.0f}" if self.milliseconds else "-"
        return f"| {label} | {self.measured}/{n} | {accuracy} | {time} |"


def onnx_for(home: Home, run_id: str) -> Path:
    run = RunDir.in_runs(home.runs, run_id)
    if not run.onnx.is_file():
        report = export_checkpoint(run_checkpoint(home, run_id), run.onnx)
        print(f"exported {run.onnx}: same instances {report.same_instances}, "
              f"largest mask difference {report.max_mask_difference:.1e}")
    return run.onnx


def truth_widths(path: Path) -> dict[str, float]:
    truth = json.loads(path.read_text())
    return {p["id"]: p["border_mm"] for p in truth["points"]}


def label_reference(image: np.ndarray, instances: list) -> Measurement | None:
    """The scan measured from its refined label quads (None when a box does not refine or that does not measure)."""
    quads = {}
    for inst, refined in zip(instances, refine_image(image, instances), strict=True):
        if isinstance(refined, RefinementRefusal):
            return None
        quads[inst.class_id] = label_to_cv(refined.polygon)
    if set(quads) != {OUTER, GRAPHIC}:
        return None
    result = measure_borders(image, quads[OUTER], quads[GRAPHIC], STANDARD)
    return result if isinstance(result, Measurement) else None


def measure_both(image: np.ndarray, name: str, outer: OnnxPredictor, graphic: OnnxPredictor, tallies: dict,
                 reference: dict[str, float] | None) -> tuple[object, object]:
    results = {}
    for method, run in (
        ("classical", lambda: measure_image(image, STANDARD, name=name)),
        ("models", lambda: measure_with_models(image, STANDARD, outer=outer, graphic=graphic, name=name)),
    ):
        result, ms = timed(run)
        tally = tallies[method]
        if isinstance(result, Measurement):
            tally.measured += 1
            tally.milliseconds.append(ms)
            tally.names_measured.add(name)
            if reference is not None:
                tally.errors_mm += [p.border_mm - reference[p.id] for p in result.points]
        else:
            tally.refused.append(f"{name}: {result.reason}")
        results[method] = result
    return results["classical"], results["models"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outer", required=True, help="run id of the outer-border model")
    parser.add_argument("--graphic", required=True, help="run id of the graphic-border model")
    parser.add_argument("--home", type=Path, default=DATA / "home")
    parser.add_argument("--limit", type=int, default=None, help="cards per set (a quick look; the figures need all)")
    args = parser.parse_args()
    home = Home(args.home.resolve())
    outer, graphic = OnnxPredictor(onnx_for(home, args.outer)), OnnxPredictor(onnx_for(home, args.graphic))

    sets: dict[str, dict[str, Tally]] = {}
    lines = []
    for name in ("synth-val", "real-val", "real-train"):
        tallies = sets.setdefault(name, {"classical": Tally(), "models": Tally()})
        dataset, _ = read_dataset(DATA / name)
        for labeled in dataset.images[: args.limit]:
            path = DATA / name / labeled.path
            image = load_image(path)
            reference = None
            if name == "synth-val":
                part, stem = Path(labeled.path).stem.split("_", 1)
                reference = truth_widths(DATA / "parts" / part / "truth" / f"{stem}.json")
            elif name == "real-val":
                measured = label_reference(image, labeled.instances)
                reference = {p.id: p.border_mm for p in measured.points} if measured else None
            classical, models = measure_both(image, Path(labeled.path).name, outer, graphic, tallies, reference)
            status = {m: ("ok" if isinstance(r, Measurement) else "refused") for m, r in
                      (("classical", classical), ("models", models))}
            print(f"{name} {Path(labeled.path).name}: classical {status['classical']}, models {status['models']}"
                  + ("" if reference else "  (no reference)"), flush=True)
            if name == "real-val":
                cells = (_cell(classical, reference), _cell(models, reference))
                lines.append(f"| {Path(labeled.path).stem} | {cells[0]} | {cells[1]} |")

    out = [
        "# Measuring with the trained models against the classical path",
        "",
        f"`.venv/bin/python bench/measure_with_models.py --outer {args.outer} --graphic {args.graphic}` on "
        f"{dt.date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        "models through onnxruntime.",
        "",
        "| set, method | measured | mean abs error (mm) | p95 | max | median ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, tallies in sets.items():
        for method, tally in tallies.items():
            out.append(tally.line(f"{name}, {method}"))
    out += ["", "Errors: renders against their exact truth; real-val against the measurement from the refined label "
            "quads (a reference, not sub-pixel truth); real-train (seen in training): yield only.", "",
            "## Held-out real scans, card by card", "",
            "| scan | classical | models |", "| --- | --- | --- |", *lines, "", "## Refusals", ""]
    for name, tallies in sets.items():
        for method, tally in tallies.items():
            out += [f"### {name}, {method}", "", *(f"- {r}" for r in tally.refused), ""]
    RESULTS.write_text("\n".join(out) + "\n")
    print("\n".join(out[:20]))


def _cell(result: object, reference: dict[str, float] | None) -> str:
    if not isinstance(result, Measurement):
        return f"refused: {result.reason}"  # type: ignore[attr-defined]
    if reference is None:
        left, right = result.centering["left_right"]
        return f"measured (no label reference), left/right {left:.1f}/{right:.1f}"
    worst = max(abs(p.border_mm - reference[p.id]) for p in result.points)
    return f"measured, worst station {worst:.3f} mm from the labels'"


if __name__ == "__main__":
    main()
