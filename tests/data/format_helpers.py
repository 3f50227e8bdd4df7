"""Small datasets on disk for the format and validation tests: tiny images made with numpy and PIL."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from cardmetry.data.instances import Dataset, LabeledImage

WIDTH, HEIGHT = 40, 30
GOOD_BOX = "0 0.5 0.5 0.5 0.5"
GOOD_POLYGON = "1 0.1 0.1 0.9 0.1 0.5 0.9"


def write_image(path: Path, seed: int = 0, width: int = WIDTH, height: int = HEIGHT) -> Path:
    """A noise image (distinct per seed, so no two count as duplicates); the suffix picks the format."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def write_text(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def yolo_dataset(root: Path, labels: dict[str, str | bytes]) -> Path:
    """images/<name>.jpg with labels/<name>.txt holding the given text, one image per entry."""
    for seed, (name, text) in enumerate(labels.items()):
        write_image(root / "images" / f"{name}.jpg", seed)
        write_text(root / "labels" / f"{name}.txt", text)
    return root


def png_header_claiming(width: int, height: int) -> bytes:
    """A PNG that is only a signature and a header announcing `width` x `height`: a decompression bomb's face."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def coco_dataset(root: Path, annotations: list[dict], categories: list[dict] | None = None) -> Path:
    """images/a.jpg (WIDTH x HEIGHT) and annotations.json with the given annotations on it (image_id 1)."""
    write_image(root / "images" / "a.jpg")
    coco = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": WIDTH, "height": HEIGHT}],
        "annotations": [{"id": i, "image_id": 1, "category_id": 1, **a} for i, a in enumerate(annotations, 1)],
        "categories": categories or [{"id": 1, "name": "outer"}, {"id": 2, "name": "graphic"}],
    }
    write_text(root / "annotations.json", json.dumps(coco))
    return root


def labelstudio_dataset(root: Path, tasks: list[dict]) -> Path:
    """images/a.jpg and tasks.json holding the given tasks."""
    write_image(root / "images" / "a.jpg")
    write_text(root / "tasks.json", json.dumps(tasks))
    return root


def images_on_disk(root: Path, dataset: Dataset, seed: int = 0) -> None:
    """Write a noise image for every image of `dataset` at its path and size under `root`."""
    for offset, image in enumerate(dataset.images):
        write_image(root / image.path, seed + offset, image.width, image.height)


def same_instances(a: LabeledImage, b: LabeledImage, tolerance: float) -> bool:
    """Whether both images hold the same instances (class, kind and outline within `tolerance` pixels)."""
    if len(a.instances) != len(b.instances):
        return False
    for first, second in zip(a.instances, b.instances, strict=True):
        if (first.class_id, first.is_box) != (second.class_id, second.is_box):
            return False
        if first.is_box:
            if not np.allclose(first.bbox, second.bbox, atol=tolerance, rtol=0):
                return False
        elif first.polygon.shape != second.polygon.shape or not np.allclose(
            first.polygon, second.polygon, atol=tolerance, rtol=0
        ):
            return False
    return True
