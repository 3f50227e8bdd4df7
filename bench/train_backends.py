"""The backend table: every trainable backend on one dataset, for both roles, under the same time budget.

    .venv/bin/python bench/train_backends.py [--minutes 40] [--backends unet:effnet-lite0-light,maskrcnn,yolo-seg]

Data: bench/training_data.py (400 synthetic cards mixed at half of each epoch with the 33 training real scans,
their boxes refined to quads); validation during training on the 14 held-out real scans. Each (backend, role)
trains in its own run under bench/.data/home with the same settings (384 px, batch 8, 320 samples an epoch,
cosine schedule) until the time budget, then its best checkpoint is scored on the held-out renders
(bench/.data/synth-val, exact truth) and the held-out real scans (refined labels):
- mask IoU against the labelled outline, at full resolution;
- corner error: how far the model's own quad lies from the labelled one (px, full resolution);
- border error after refinement: the 24 widths measured with the model's outline snapped and fitted by the
  engine (the other role from its labels), against those measured from the labels, and the share refused;
- time to the quality bar: the first epoch whose validation border error is within 0.02 mm with at most a fifth
  of the cards refused (from the run's events);
- inference ms per card through onnxruntime at the run's input size, and the ONNX file's size.
Runs one after the other (2 threads each). Writes bench/results/train_backends.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path

import cv2
import numpy as np
from timing import timed  # bench/timing.py: scripts run from bench/ import it directly

from cardmetry.data.formats import read_dataset
from cardmetry.data.images import load_image
from cardmetry.models.export import export_checkpoint
from cardmetry.models.predictors import OnnxPredictor, model_from_checkpoint
from cardmetry.training.config import TrainConfig
from cardmetry.training.data import prepare_data
from cardmetry.training.evaluate import BorderEvaluator
from cardmetry.training.events import read_events
from cardmetry.training.loop import train_run
from cardmetry.training.runs import RunDir
from cardmetry.training.sources import DataSource, folder_version

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "bench" / ".data"
RESULTS = REPO / "bench" / "results" / "train_backends.md"
QUALITY_MM, QUALITY_REFUSED = 0.02, 0.2


def source(name: str) -> DataSource:
    dataset, _ = read_dataset(DATA / name)
    return DataSource(dataset, DATA / name, folder_version(dataset, DATA / name))


def train(backend: str, variant: str | None, role: str, minutes: float, home: Path) -> RunDir:
    config = TrainConfig.model_validate({
        "data": str(DATA / "real-train"), "val": str(DATA / "real-val"), "synthetic": str(DATA / "synth-train"),
        "synthetic_share": 0.5, "role": role, "backend": backend, "variant": variant, "imgsz": 384, "batch": 8,
        "epochs": 100, "epoch_size": 320, "patience": 0, "threads": 2,
    })
    run = RunDir(home / "runs" / f"bench-{time.strftime('%Y%m%d-%H%M%S')}-{backend}-{variant or 'default'}-{role}")
    run.write_config(config)
    deadline = time.monotonic() + minutes * 60

    def budget(event: dict) -> None:
        if event["type"] in ("batch", "epoch_end") and time.monotonic() > deadline:
            run.request("stop")

    data = prepare_data(config, source("real-train"), source("real-val"), source("synth-train"))
    train_run(run, config, data, listeners=(budget,))
    return run


def quality_minutes(run: RunDir) -> float | None:
    events = read_events(run.events)
    start = next(e["time"] for e in events if e["type"] == "run_started")
    for event in events:
        m = event.get("metrics") or {}
        if event["type"] == "epoch_end" and m.get("border_error_mm") is not None \
                and m["border_error_mm"] <= QUALITY_MM and m.get("border_refused", 1) <= QUALITY_REFUSED:
            return (event["time"] - start) / 60
    return None


def score(run: RunDir, role: str) -> dict[str, float]:
    checkpoint = run.best if run.best.is_file() else run.last
    backend, model, spec = model_from_checkpoint(checkpoint)
    figures: dict[str, float] = {}
    for name in ("synth-val", "real-val"):
        config = TrainConfig.model_validate({"data": name, "role": role, "val_share": 0.5})
        data = prepare_data(config, source(name))
        samples = data.train + data.val
        border = BorderEvaluator(samples, limit=len(samples)).evaluate(backend, model, spec, "cpu")
        figures.update({f"{name} {k}": v for k, v in border.items()})
        figures[f"{name} mask IoU"] = mask_iou(samples, backend, model, spec)
    onnx = export_checkpoint(checkpoint, run.onnx)
    predictor = OnnxPredictor(run.onnx)
    image = load_image(source("real-val").root / source("real-val").dataset.images[0].path)
    figures["onnx ms"] = timed(lambda: predictor.predict(image))[1]
    figures["onnx MB"] = onnx.size_bytes / 1e6
    figures["minutes to quality"] = quality_minutes(run) or float("nan")
    figures["epochs"] = float(sum(e["type"] == "epoch_end" for e in read_events(run.events)))
    return figures


def mask_iou(samples: list, backend: object, model: object, spec: object) -> float:
    from cardmetry.models.predictors import TorchPredictor

    predictor = TorchPredictor(backend, model, spec)  # type: ignore[arg-type]
    ious = []
    for sample in samples:
        image = load_image(sample.path)
        found = predictor.predict(image)
        for inst in sample.instances:
            best = next((f for f in found if f.class_id == inst.class_id), None)
            truth = rasterise_full(inst.polygon, image.shape[:2])
            mine = best.mask >= 0.5 if best is not None else np.zeros_like(truth)
            ious.append(float((truth & mine).sum() / max(1, (truth | mine).sum())))
    return float(np.mean(ious))


def rasterise_full(polygon: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The labelled outline as a full-resolution mask (a pixel in when its centre is: at this size OpenCV's
    pixel of growth along the outline is below what an IoU can show)."""
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round((polygon - 0.5) * 16).astype(np.int32)], 1, shift=4)
    return mask.astype(bool)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=40.0, help="training budget per run")
    parser.add_argument("--backends", default="unet:effnet-lite0-light,unet:effnet-lite0,maskrcnn,yolo-seg")
    parser.add_argument("--roles", default="outer,graphic")
    parser.add_argument("--home", type=Path, default=DATA / "home")
    args = parser.parse_args()
    home = args.home
    rows = []
    for entry in args.backends.split(","):
        backend, _, variant = entry.partition(":")
        for role in args.roles.split(","):
            run = train(backend, variant or None, role, args.minutes, home)
            figures = score(run, role)
            rows.append((entry, role, figures))
            print(entry, role, json.dumps({k: round(v, 4) for k, v in figures.items()}), flush=True)
    keys = sorted({k for _, _, f in rows for k in f})
    out = [
        "# Backends on one dataset",
        "",
        f"`.venv/bin/python bench/train_backends.py --minutes {args.minutes} --backends {args.backends}` on "
        f"{dt.date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores.",
        "",
        "| backend | role | " + " | ".join(keys) + " |",
        "| --- | --- | " + " | ".join("---" for _ in keys) + " |",
    ]
    for entry, role, figures in rows:
        out.append(f"| {entry} | {role} | " + " | ".join(f"{figures.get(k, float('nan')):.4g}" for k in keys) + " |")
    RESULTS.write_text("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
