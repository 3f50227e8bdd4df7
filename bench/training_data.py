"""The data the backend benchmark and the default models train on, built reproducibly under bench/.data/.

    .venv/bin/python bench/training_data.py [--scans ../shared/data/real-scans]

- synth-train/: 400 synthetic cards, 300 flatbed scans at 300 dpi and 100 phone photos (seeds 700000 and
  710000), a tenth of them lying sideways; YOLO-seg polygons with exact truth.
- synth-val/: 24 held-out renders at 600 dpi and 12 phone photos (seeds 720000 and 730000).
- real-train/ and real-val/: the 47 real scans split 70/30 by content hash (seed 0), as links to ../shared (never
  copied or written) with their box labels; training refines the boxes to quads first.
Everything is skipped when already there; delete bench/.data/ to build again.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from cardmetry.data.formats import read_dataset, write_labels
from cardmetry.data.instances import Dataset, LabeledImage
from cardmetry.data.splits import split_dataset
from cardmetry.data.synth.dataset import SynthOptions, write_synth

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "bench" / ".data"
DEFAULT_SCANS = REPO.parent / "shared" / "data" / "real-scans"


def merged(root: Path, parts: dict[str, SynthOptions], workers: int) -> None:
    """Several synthetic renders in one dataset folder: each part rendered to its own folder, linked together."""
    if (root / "data.yaml").exists():
        return
    images: list[LabeledImage] = []
    for name, options in parts.items():
        part = DATA / "parts" / name
        if not (part / "data.yaml").exists():
            shutil.rmtree(part, ignore_errors=True)
            write_synth(part, options, workers=workers)
        dataset, problems = read_dataset(part)
        assert not problems, problems[:3]
        for image in dataset.images:
            linked = f"images/{name}_{Path(image.path).name}"
            (root / "images").mkdir(parents=True, exist_ok=True)
            (root / linked).symlink_to(part / image.path)
            images.append(LabeledImage(linked, image.width, image.height, image.instances))
    write_labels(Dataset(["outer", "graphic"], images), root)


def real_split(scans: Path) -> None:
    if (DATA / "real-val" / "data.yaml").exists():
        return
    dataset, _ = read_dataset(scans)
    splits = split_dataset(dataset, scans, (0.7, 0.3), seed=0)
    for split in ("train", "val"):
        root = DATA / f"real-{split}"
        (root / "images").mkdir(parents=True, exist_ok=True)
        chosen = [image for image in dataset.images if splits[image.path] == split]
        for image in chosen:
            (root / "images" / Path(image.path).name).symlink_to(scans / image.path)
        relinked = [LabeledImage(f"images/{Path(i.path).name}", i.width, i.height, i.instances) for i in chosen]
        write_labels(Dataset(list(dataset.classes), relinked), root)
        print(f"real-{split}: {len(chosen)} scans")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=Path, default=DEFAULT_SCANS)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    merged(DATA / "synth-train", {
        "scan300": SynthOptions(count=300, seed=700_000, dpi=300, landscape_share=0.1),
        "photo": SynthOptions(count=100, seed=710_000, photo=True, landscape_share=0.1),
    }, args.workers)
    merged(DATA / "synth-val", {
        "scan600": SynthOptions(count=24, seed=720_000, dpi=600),
        "photoval": SynthOptions(count=12, seed=730_000, photo=True),
    }, args.workers)
    real_split(args.scans.resolve())
    print(f"data in {DATA}")


if __name__ == "__main__":
    main()
