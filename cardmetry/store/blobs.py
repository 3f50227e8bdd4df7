"""Content-addressed storage: a file is stored once under its sha256, however often and under whatever name it
arrives. Writes go to a temporary file first and are renamed into place, so a half-written blob never appears."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from cardmetry.data.hashing import sha256_of

_CHUNK = 1 << 20


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str) -> Path:
        """Where the blob lives: named by its digest alone, so the same bytes as .jpg and .jpeg are one blob (image
        readers tell the format from the content)."""
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 digest: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def put(self, source: Path) -> tuple[str, Path, bool]:
        """Store a file; returns its digest, its stored path and whether it was new."""
        sha = sha256_of(source)
        target = self.path_for(sha)
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
