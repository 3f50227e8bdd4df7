"""Files written whole or not at all: a temporary file beside the target, renamed over it.

An interrupted batch (Ctrl-C, a full disk, a killed process) then never leaves a half-written report or overlay
that looks complete; the old file, if any, stays as it was.
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
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb)
    if not ok:
        raise OSError(f"cannot write {os.fspath(path)}: PNG encoding failed")
    atomic_write(path, encoded.tobytes())
