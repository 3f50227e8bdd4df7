"""Safe access to image files: header-only size, full integrity check, and loading.

Every entry point checks width x height against a pixel limit before any pixel is decoded, so a small file that
claims a huge size (a decompression bomb) costs nothing. Truncated files are errors, never silently padded with
grey: Pillow's default (`ImageFile.LOAD_TRUNCATED_IMAGES = False`) is what makes `load()` raise on them, and
nothing in cardmetry changes that default.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cardmetry.data.problems import Problem

DEFAULT_MAX_PIXELS = 150_000_000
# Every image is opened through `_open_within_limit`, which applies the caller's limit from the header before any
# decoding; Pillow's own fixed guard (about 179 megapixels) would override a larger `--max-pixels`, so it is off.
Image.MAX_IMAGE_PIXELS = None
# Pillow's own opener, kept before anything can replace it: Ultralytics (the optional yolo-seg backend) swaps
# `Image.open` for one that, on a file Pillow cannot identify, tries to install and import a HEIF plugin.
_pil_open = Image.open
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I"})


class ImageError(ValueError):
    """An image file that cannot be used. `str()` names the file and what is wrong; `problem` is the latter."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


def is_image_name(name: str | Path) -> bool:
    """Whether a file name has one of the image suffixes the readers look for (case-insensitive)."""
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


@contextmanager
def _open_within_limit(path: Path, max_pixels: int) -> Iterator[Image.Image]:
    """Open `path` (header only) and yield it if its pixel count is within `max_pixels`; else ImageError."""
    try:
        byte_count = path.stat().st_size
    except OSError as error:
        raise ImageError(path, f"cannot read the file ({error.strerror or error})") from error
    if byte_count == 0:
        raise ImageError(path, "empty file (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = _pil_open(path)
        except UnidentifiedImageError as error:
            raise ImageError(path, "not a readable image (unknown format or corrupt header)") from error
        except Exception as error:  # a plugin's own failure on bad bytes is still the file's problem
            raise ImageError(path, f"unreadable image header ({type(error).__name__}: {error})") from error
        with image:
            width, height = image.size
            if width <= 0 or height <= 0:
                raise ImageError(path, f"image has no pixels ({width} x {height})")
            if width * height > max_pixels:
                raise ImageError(
                    path,
                    f"image is {width} x {height} = {width * height:,} pixels, above the limit of {max_pixels:,}; "
                    "not decoded (decompression-bomb guard)",
                )
            yield image


def _decode_fully(image: Image.Image, path: Path) -> None:
    """Decode every pixel, turning the many exceptions Pillow's plugins raise on bad data into ImageError."""
    try:
        image.load()
    # A decoder fed arbitrary bytes can raise almost anything (OSError, SyntaxError, struct.error, IndexError...);
    # whatever it is, the answer is the same: this file is not a usable image.
    except Exception as error:
        text = str(error)
        kind = "truncated image" if "truncated" in text else "corrupt image data"
        raise ImageError(path, f"{kind} ({text})") from error


def read_image_size(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """(width, height) of the stored pixels, from the header alone. ImageError if unreadable or too large."""
    path = Path(path)
    with _open_within_limit(path, max_pixels) as image:
        return image.size


def check_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS, *, name: str | None = None) -> list[Problem]:
    """Every reason the image cannot be used (empty list when it decodes completely within the limit).

    `name` is how problems refer to the file (e.g. its path relative to the dataset root); default `path`.
    """
    path = Path(path)
    shown = name if name is not None else str(path)
    try:
        with _open_within_limit(path, max_pixels) as image:
            try:
                image.verify()  # structural checks some formats have (PNG chunk CRCs); JPEG's is a no-op
            except Exception as error:  # same reason as in _decode_fully
                raise ImageError(path, f"corrupt image ({error})") from error
        # verify() leaves the image unusable, so decode from a fresh handle.
        with _open_within_limit(path, max_pixels) as image:
            _decode_fully(image, path)
    except ImageError as error:
        return [Problem(shown, error.problem)]
    return []


def load_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The stored pixels as an (H, W, 3) RGB uint8 array. ImageError names the file and the problem.

    EXIF orientation is deliberately NOT applied: label coordinates (YOLO, COCO, Label Studio) refer to the
    stored pixel grid, so rotating the pixels would silently misplace every label.
    """
    path = Path(path)
    with _open_within_limit(path, max_pixels) as image:
        _decode_fully(image, path)
        if image.mode in _SIXTEEN_BIT_MODES:
            # convert("RGB") would clip 16-bit values at 255 instead of scaling them.
            grey = np.asarray(image).astype(np.float64) * (255.0 / 65535.0)
            return np.repeat(np.clip(np.rint(grey), 0, 255).astype(np.uint8)[..., None], 3, axis=2)
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
