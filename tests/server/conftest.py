"""What the server's tests share: a fresh home per test, with its catalog inside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from cardmetry.store.database import DATABASE_URL_ENV
from cardmetry.store.datasets import import_dataset
from cardmetry.store.home import Home
from cardmetry.training.sources import DataSource


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)  # the catalog in this home, never a shared database
    return Home(tmp_path / "home")


def store_tiny(home: Home, cards: DataSource) -> str:
    """The rendered cards stored as dataset "tiny" (runs started through the API train on stored datasets only)."""
    stored = import_dataset(home, "tiny", cards.dataset, cards.root, [])
    return f"tiny@{stored.version}"
