"""Images to bytes and files written whole or not at all.

Every image the measure layer writes or embeds (the overlay PNG, the report's JPEGs, a simulated rescan's JPEG
round trip) is encoded here, from RGB. Files go to a temporary file beside the target, renamed over it: an
interrupted batch (Ctrl-C, a full disk, a killed process) never leaves a half-written report or overlay that looks
complete, and the old file, if any, stays as it was.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import cv2
import numpy as np


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Write bytes to a temporary file beside `path`, then rename it over `path` (atomic on one file system)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        # os.open with 0o666 lets the umask decide the mode, as a plain open() would (mkstemp would make it 0600).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        tmp.replace(target)  # os.replace: atomic, and over an existing file too
    except BaseException as error:  # Ctrl-C too: no temporary file is left behind
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise OSError(f"cannot write {target}: {error.strerror or error}") from error
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """`atomic_write` for text, as UTF-8."""
    atomic_write(path, text.encode("utf-8"))


def write_png(path: str | os.PathLike[str], rgb: np.ndarray) -> None:
    """Write an RGB image as PNG, atomically: readers see the old file or the whole new one, never half of it."""
    atomic_write(path, encode_image(rgb, ".png"))


def as_rgb(image: np.ndarray) -> np.ndarray:
    """An RGB uint8 array from an RGB, RGBA or grey uint8 image."""
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {array.dtype}")
    if array.ndim == 2:
        return cv2.cvtColor(array, cv2.COLOR_GRAY2RGB)
    if array.ndim == 3 and array.shape[2] in (3, 4):
        return np.ascontiguousarray(array[:, :, :3])
    raise ValueError(f"expected an RGB or grey image, got shape {array.shape}")


def encode_image(image: np.ndarray, suffix: str, jpeg_quality: int = 95) -> bytes:
    """An RGB (or grey) uint8 image as PNG or JPEG bytes (`suffix` ".png" or ".jpg")."""
    pixels = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if suffix == ".jpg" else []
    ok, encoded = cv2.imencode(suffix, np.ascontiguousarray(pixels), params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} image as {suffix}")
    return encoded.tobytes()


def decode_image(data: bytes, colour: bool = True) -> np.ndarray:
    """`encode_image` undone: RGB (or grey) uint8."""
    array = np.frombuffer(data, np.uint8)
    if colour:
        return cv2.cvtColor(cv2.imdecode(array, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return cv2.imdecode(array, cv2.IMREAD_GRAYSCALE)
