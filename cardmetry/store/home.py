"""The on-disk layout of CARDMETRY_HOME (see DESIGN.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = Path("cardmetry-data")


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def from_env(cls, override: Path | None = None) -> Home:
        """The home given, else $CARDMETRY_HOME, else ./cardmetry-data."""
        root = override or Path(os.environ.get("CARDMETRY_HOME", DEFAULT_HOME))
        return cls(root.resolve())

    @property
    def blobs(self) -> Path:
        return self.root / "blobs"

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def models(self) -> Path:
        return self.root / "models"
