"""Content-addressed storage: a file is stored once under its sha256, however often and under whatever name it
arrives. Writes go to a temporary file first and are renamed into place, so a half-written blob never appears."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str, suffix: str = "") -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 digest: {sha256!r}")
        return self.root / sha256[:2] / f"{sha256}{suffix.lower()}"

    def put(self, source: Path) -> tuple[str, Path, bool]:
        """Store a file; returns its digest, its stored path and whether it was new."""
        sha = sha256_of(source)
        target = self.path_for(sha, source.suffix)
        if target.exists():
            return sha, target, False
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False, suffix=".partial") as tmp:
            tmp_path = Path(tmp.name)
            with source.open("rb") as src:
                shutil.copyfileobj(src, tmp, _CHUNK)
        # The copy is checked against the digest, so a file changed while it was read never lands under a wrong name.
        if sha256_of(tmp_path) != sha:
            tmp_path.unlink()
            raise OSError(f"{source}: changed while it was being stored; try again")
        tmp_path.replace(target)
        return sha, target, True
