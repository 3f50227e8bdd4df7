"""Where a run's images come from: a dataset already read, the folder its paths are relative to, and its version.

Kept free of torch, so the store can resolve `--data` without loading it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cardmetry.data.hashing import sha256_of
from cardmetry.data.instances import Dataset


@dataclass(frozen=True)
class DataSource:
    dataset: Dataset
    root: Path  # the dataset's image paths are relative to this
    version: str  # content hash: the same images and labels give the same version


def folder_version(dataset: Dataset, root: Path) -> str:
    """A content hash for a dataset read from a folder: image bytes and labels, not file names or order."""
    digest = hashlib.sha256()
    rows = []
    for image in dataset.images:
        try:
            content = sha256_of(root / image.path)
        except OSError:
            content = "missing:" + image.path
        labels = sorted((i.class_id, np.round(i.polygon, 3).tobytes().hex()) for i in image.instances)
        rows.append(f"{content}:{labels}")
    for row in sorted(rows):
        digest.update(row.encode())
    return digest.hexdigest()[:12]
