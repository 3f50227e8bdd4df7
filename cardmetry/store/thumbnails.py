"""Gallery thumbnails of a stored dataset version: each image scaled down, its labels drawn on it, cached on disk.

A thumbnail is keyed by the image's content hash, the size asked for and a hash of the labels drawn, under
HOME/cache/thumbnails/, so the gallery of a large dataset is rendered once, two versions that label the same image
differently never share a picture, and a version's labels can never be shown on a stale thumbnail. Only a few
sizes are drawn (SIZES): any size at all would let one image fill the cache with hundreds of pictures. The cache
holds nothing that cannot be rebuilt: deleting it costs only time.

Coordinates: labels use the label convention (pixel edge at 0); the drawing converts to OpenCV's at the boundary.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from cardmetry.data.images import DEFAULT_MAX_PIXELS, ImageError, load_image
from cardmetry.data.instances import GRAPHIC, OUTER, label_to_cv
from cardmetry.measure.files import atomic_write, encode_image
from cardmetry.measure.overlay import GRAPHIC_COLOUR, OUTER_COLOUR
from cardmetry.store.blobs import BlobStore
from cardmetry.store.home import Home

SIZES = (128, 256, 512, 1024)  # the longest side of a thumbnail, pixels: the only sizes drawn and cached
OTHER_COLOUR = (255, 220, 0)  # yellow: a class that is neither outer nor graphic
CLASS_COLOURS = {OUTER: OUTER_COLOUR, GRAPHIC: GRAPHIC_COLOUR}
JPEG_QUALITY = 85
SHIFT = 4  # fractional bits for cv2 drawing: label corners land to 1/16 px
RENDER_VERSION = "2"  # part of every cache key: a change to the drawing invalidates old thumbnails


def labels_digest(instances: Sequence[dict[str, Any]]) -> str:
    """A short hash of the labels as a manifest stores them (class, box or polygon, points)."""
    text = json.dumps([RENDER_VERSION, list(instances)], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def thumbnail_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) with the longest side `size`, never larger than the image itself."""
    scale = min(1.0, size / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _load_reduced(path: Path, target: tuple[int, int]) -> np.ndarray:
    """The image as RGB at about `target` pixels. JPEG's draft mode decodes at 1/2, 1/4 or 1/8 scale directly,
    which makes a 2000 px scan's thumbnail many times cheaper than decoding it whole."""
    try:
        with Image.open(path) as image:
            if image.width * image.height > DEFAULT_MAX_PIXELS:
                raise ImageError(path, "image above the pixel limit")
            image.draft("RGB", target)
            pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except ImageError:
        raise
    except Exception:  # Pillow could not take the short cut: the careful loader says why, naming the file
        pixels = load_image(path)
    return cv2.resize(pixels, target, interpolation=cv2.INTER_AREA)


def render_thumbnail(
    path: Path, width: int, height: int, instances: Sequence[dict[str, Any]], size: int
) -> bytes:
    """A JPEG of the image at `path` (stored size `width` x `height`), longest side `size` at most, with each
    instance's outline drawn: outer in cyan, graphic in magenta, any other class in yellow."""
    target = thumbnail_size(width, height, size)
    canvas = np.ascontiguousarray(_load_reduced(path, target))
    scale = np.array([target[0] / width, target[1] / height])
    thickness = 1 if max(target) < 160 else 2  # a gallery shows where the labels are, not sub-pixel detail
    for instance in instances:
        polygon = np.asarray(instance["polygon"], float).reshape(-1, 2)
        if len(polygon) < 2:
            continue
        # Scaling label-convention points keeps pixel edges on pixel edges; only then shift to pixel centres.
        points = np.round(label_to_cv(polygon * scale) * (1 << SHIFT)).astype(np.int32)
        colour = CLASS_COLOURS.get(int(instance["class_id"]), OTHER_COLOUR)
        cv2.polylines(canvas, [points], True, colour, thickness, cv2.LINE_AA, SHIFT)
    return encode_image(canvas, ".jpg", JPEG_QUALITY)


def cached_thumbnail(home: Home, entry: dict[str, Any], size: int) -> Path:
    """The thumbnail of one manifest entry (sha256, width, height, instances), rendered once and then read from
    HOME/cache/thumbnails/. ValueError for a size not in SIZES or a digest that is not one; ImageError when the
    stored image cannot be read."""
    if size not in SIZES:
        raise ValueError(f"thumbnail size {size}: one of {', '.join(map(str, SIZES))} pixels")
    sha = str(entry["sha256"])
    source = BlobStore(home.blobs).path_for(sha)  # checks the digest: no other path can be named
    instances: list[dict[str, Any]] = list(entry.get("instances") or [])
    folder = home.root / "cache" / "thumbnails" / sha[:2]
    cached = folder / f"{sha}-{size}-{labels_digest(instances)}.jpg"
    if cached.is_file():
        return cached
    data = render_thumbnail(source, int(entry["width"]), int(entry["height"]), instances, size)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(cached, data)  # two requests rendering the same thumbnail at once never show a half file
    return cached
