"""Reproducible train/val/test splits.

Images are ranked by a hash of the seed and each image's key (its content hash when known), so a split depends
only on the seed and the images themselves: never on file order, file names or the machine.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cardmetry.data.hashing import sha256_of
from cardmetry.data.instances import Dataset

SPLIT_NAMES = ("train", "val", "test")


def split_indices(keys: list[str], ratios: tuple[float, ...], seed: int = 0) -> dict[str, list[int]]:
    """Assign each key to a split so that the split sizes follow the ratios (largest remainder rounding)."""
    if len(ratios) > len(SPLIT_NAMES) or any(r < 0 for r in ratios) or sum(ratios) <= 0:
        raise ValueError(f"ratios must be 1 to 3 non-negative numbers with a positive sum, got {ratios}")
    total = sum(ratios)
    exact = [len(keys) * r / total for r in ratios]
    sizes = [int(e) for e in exact]
    for i in sorted(range(len(exact)), key=lambda i: exact[i] - sizes[i], reverse=True)[: len(keys) - sum(sizes)]:
        sizes[i] += 1
    ranked = sorted(range(len(keys)), key=lambda i: hashlib.sha256(f"{seed}:{keys[i]}".encode()).hexdigest())
    out: dict[str, list[int]] = {}
    start = 0
    for name, size in zip(SPLIT_NAMES, sizes, strict=False):
        out[name] = sorted(ranked[start : start + size])
        start += size
    return out


def split_dataset(dataset: Dataset, root: Path, ratios: tuple[float, ...], seed: int = 0) -> dict[str, str]:
    """Image path -> split name, ranking each image by its content hash (by its path when it cannot be read), so
    the same images split the same way whatever their names."""
    keys = []
    for image in dataset.images:
        try:
            keys.append(sha256_of(root / image.path))
        except OSError:
            keys.append(image.path)
    indices = split_indices(keys, ratios, seed)
    return {dataset.images[i].path: name for name, members in indices.items() for i in members}
