"""Content hashes: how the project recognises the same image under two names, and how the store names blobs."""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    """The file's sha256 as 64 lower-case hexadecimal digits (read in chunks: images can be large)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
