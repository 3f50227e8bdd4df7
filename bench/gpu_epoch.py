"""Epoch time of the default backend on a CUDA GPU against the CPU, on the same renders and settings.

    .venv/bin/python bench/gpu_epoch.py [--cards 96] [--epochs 3]

Renders its own cards (nothing to carry to a lent machine), then trains `unet effnet-lite0-light` at 384 px,
batch 8, for `--epochs` epochs on CUDA (mixed precision, cuDNN autotuning: what `--device auto` does there) and
for one epoch on the CPU, each through the real training loop, and prints the seconds per epoch and the ratio.
The first CUDA epoch includes cuDNN's autotuning and is reported apart.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

import torch

from cardmetry.data.formats import read_dataset
from cardmetry.data.synth.dataset import SynthOptions, write_synth
from cardmetry.training.config import TrainConfig
from cardmetry.training.data import prepare_data
from cardmetry.training.events import read_events
from cardmetry.training.loop import train_run
from cardmetry.training.runs import RunDir
from cardmetry.training.sources import DataSource, folder_version


def epoch_seconds(root: Path, data: DataSource, device: str, epochs: int) -> list[float]:
    config = TrainConfig.model_validate({
        "data": str(data.root), "role": "outer", "backend": "unet", "variant": "effnet-lite0-light", "imgsz": 384,
        "batch": 8, "epochs": epochs, "device": device, "patience": 0, "border_eval_images": 4,
        "loader_workers": 4 if device == "cuda" else 0,
    })
    run = RunDir(root / f"run-{device}")
    result = train_run(run, config, prepare_data(config, data))
    events = read_events(run.events)
    if result != "succeeded":
        raise SystemExit(f"{device} run {result}: {events[-1]}")
    return [e["epoch_seconds"] for e in events if e["type"] == "epoch_end"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark needs one")
    root = Path(tempfile.mkdtemp(prefix="gpu-epoch-"))
    write_synth(root / "cards", SynthOptions(count=args.cards, seed=740_000, dpi=300), workers=os.cpu_count() or 1)
    dataset, _ = read_dataset(root / "cards")
    data = DataSource(dataset, root / "cards", folder_version(dataset, root / "cards"))
    cuda = epoch_seconds(root, data, "cuda", args.epochs)
    cpu = epoch_seconds(root, data, "cpu", 1)
    steady = sum(cuda[1:]) / max(1, len(cuda) - 1) if len(cuda) > 1 else cuda[0]
    print(json.dumps({
        "gpu": torch.cuda.get_device_name(0), "cpu": platform.processor() or platform.machine(),
        "cpu_cores": os.cpu_count(), "cards": args.cards, "cuda_epoch_s": cuda, "cpu_epoch_s": cpu,
        "cuda_steady_epoch_s": round(steady, 2), "cpu_over_cuda": round(cpu[0] / steady, 1),
    }, indent=1))


if __name__ == "__main__":
    main()
