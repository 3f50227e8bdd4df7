"""The backend table: every trainable backend on one dataset, for both roles, under the same training budget.

    .venv/bin/python bench/train_backends.py [--minutes 40] [--backends unet:effnet-lite0-light,maskrcnn,yolo-seg]
        [--threads 1] [--include RUN,RUN]

Data: bench/training_data.py (400 synthetic cards mixed at half of each epoch with the 33 training real scans,
their boxes refined to quads); validation during training on the 14 held-out real scans. Each (backend, role)
trains in its own run under bench/.data/home with the same settings (384 px, batch 8, 320 samples an epoch,
cosine schedule). The two roles of a backend train side by side, each in its own process with `--threads` torch
threads, until the process has used `--minutes` of CPU time: a CPU budget stays fair to every backend whatever
else the machine is doing. `--include` scores runs trained elsewhere (the default models) in the same table.
Afterwards, one run at a time, each run's best checkpoint is scored on the held-out renders
(bench/.data/synth-val, exact truth) and the held-out real scans (refined labels):
- mask IoU against the labelled outline, at full resolution;
- corner error: how far the model's own quad lies from the labelled one (px, full resolution);
- border error after refinement: the 24 widths measured with the model's outline snapped and fitted by the
  engine (the other role from its labels), against those measured from the labels, and the share refused;
- time to the quality bar: the first epoch whose validation border error is within 0.02 mm with at most a fifth
  of the cards refused (CPU minutes from the run's cpu_minutes.json; wall minutes for an included run without it);
- inference ms per card through onnxruntime at the run's input size, and the ONNX file's size.
Writes bench/results/train_backends.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
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
CPU_MINUTES = "cpu_minutes.json"  # epoch -> CPU minutes the training process had used at its end


def source(name: str) -> DataSource:
    dataset, _ = read_dataset(DATA / name)
    return DataSource(dataset, DATA / name, folder_version(dataset, DATA / name))


def train(backend: str, variant: str | None, role: str, minutes: float, threads: int, home: Path) -> RunDir:
    config = TrainConfig.model_validate({
        "data": str(DATA / "real-train"), "val": str(DATA / "real-val"), "synthetic": str(DATA / "synth-train"),
        "synthetic_share": 0.5, "role": role, "backend": backend, "variant": variant, "imgsz": 384, "batch": 8,
        "epochs": 100, "epoch_size": 320, "patience": 0, "threads": threads,
    })
    run = RunDir(home / "runs" / f"bench-{time.strftime('%Y%m%d-%H%M%S')}-{backend}-{variant or 'default'}-{role}")
    run.write_config(config)
    cpu_at_epoch: dict[int, float] = {}
    zero = [0.0]  # CPU minutes when training began (preparing the data is not counted)

    def budget(event: dict) -> None:
        if event["type"] == "run_started":
            zero[0] = time.process_time() / 60
        used = time.process_time() / 60 - zero[0]
        if event["type"] == "epoch_end":
            cpu_at_epoch[event["epoch"]] = used
            (run.path / CPU_MINUTES).write_text(json.dumps(cpu_at_epoch))
        if event["type"] in ("batch", "epoch_end") and used > minutes:
            run.request("stop")

    data = prepare_data(config, source("real-train"), source("real-val"), source("synth-train"))
    train_run(run, config, data, listeners=(budget,))
    return run


def quality_minutes(run: RunDir) -> float | None:
    """Minutes to the first epoch at the quality bar: CPU minutes where the run recorded them, else wall minutes."""
    events = read_events(run.events)
    cpu_file = run.path / CPU_MINUTES
    cpu = {int(k): v for k, v in json.loads(cpu_file.read_text()).items()} if cpu_file.is_file() else None
    start = next(e["time"] for e in events if e["type"] == "run_started")
    for event in events:
        m = event.get("metrics") or {}
        if event["type"] == "epoch_end" and m.get("border_error_mm") is not None \
                and m["border_error_mm"] <= QUALITY_MM and m.get("border_refused", 1) <= QUALITY_REFUSED:
            return cpu.get(event["epoch"], float("nan")) if cpu is not None else (event["time"] - start) / 60
    return None


def trained_minutes(run: RunDir) -> float:
    """How long the run trained: CPU minutes at its last epoch where recorded, else wall minutes."""
    cpu_file = run.path / CPU_MINUTES
    if cpu_file.is_file():
        return max(json.loads(cpu_file.read_text()).values(), default=float("nan"))
    events = read_events(run.events)
    return (events[-1]["time"] - events[0]["time"]) / 60


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
    figures["minutes trained"] = trained_minutes(run)
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


def train_roles_side_by_side(entry: str, roles: list[str], args: argparse.Namespace) -> list[RunDir]:
    """Each role in its own process at the same time; returns their runs. A child's output goes to a log file
    beside the runs (a pipe left unread while waiting on its sibling would fill and stall it)."""
    logs = [args.home / f"train-{entry.replace(':', '-')}-{role}.log" for role in roles]
    children = []
    for role, log in zip(roles, logs, strict=True):
        with log.open("w") as out:
            children.append(subprocess.Popen(
                [sys.executable, __file__, "--train-one", entry, "--roles", role, "--minutes", str(args.minutes),
                 "--threads", str(args.threads), "--home", str(args.home)],
                stdout=out, stderr=subprocess.STDOUT, text=True))
    for child, log in zip(children, logs, strict=True):
        if child.wait():
            raise SystemExit(f"training {entry} failed (exit {child.returncode}); see {log}")
    return [RunDir(Path(log.read_text().strip().splitlines()[-1])) for log in logs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=40.0, help="CPU minutes of training per run")
    parser.add_argument("--backends", default="unet:effnet-lite0-light,maskrcnn,yolo-seg")
    parser.add_argument("--roles", default="outer,graphic")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--include", default="", help="runs under HOME/runs to score as well, comma-separated")
    parser.add_argument("--home", type=Path, default=DATA / "home")
    parser.add_argument("--train-one", help=argparse.SUPPRESS)  # the child process of one (backend, role)
    args = parser.parse_args()
    if args.train_one:
        backend, _, variant = args.train_one.partition(":")
        print(train(backend, variant or None, args.roles, args.minutes, args.threads, args.home).path, flush=True)
        return
    runs = [RunDir.in_runs(args.home / "runs", name) for name in args.include.split(",") if name]
    for entry in filter(None, args.backends.split(",")):
        runs += train_roles_side_by_side(entry, args.roles.split(","), args)
    rows = []
    for run in runs:
        config = run.read_config()
        entry = config.backend + (f":{config.variant}" if config.variant else "")
        figures = score(run, config.role)
        rows.append((entry, config.role, run.id, figures))
        print(entry, config.role, json.dumps({k: round(v, 4) for k, v in figures.items()}), flush=True)
    keys = sorted({k for *_, f in rows for k in f})
    out = [
        "# Backends on one dataset",
        "",
        f"`.venv/bin/python bench/train_backends.py --minutes {args.minutes} --backends {args.backends} "
        f"--threads {args.threads}" + (f" --include {args.include}" if args.include else "") + f"` on "
        f"{dt.date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores.",
        "",
        "| backend | role | run | " + " | ".join(keys) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in keys) + " |",
    ]
    for entry, role, run_id, figures in rows:
        out.append(f"| {entry} | {role} | {run_id} | "
                   + " | ".join(f"{figures.get(k, float('nan')):.4g}" for k in keys) + " |")
    RESULTS.write_text("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
