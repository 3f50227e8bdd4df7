"""Shared fixtures: tiny rendered cards as training data, and the toy backend registered as "toy"."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cardmetry.data.formats import read_dataset
from cardmetry.data.synth.dataset import SynthOptions, write_synth
from cardmetry.models import registry
from cardmetry.training.sources import DataSource, folder_version


@pytest.fixture(scope="session")
def tiny_cards(tmp_path_factory: pytest.TempPathFactory) -> DataSource:
    """Ten cards rendered at 100 dpi (about 250 x 350 px each, with background)."""
    root = tmp_path_factory.mktemp("tiny-cards")
    write_synth(root, SynthOptions(count=10, seed=4242, dpi=100, supersample=1))
    dataset, problems = read_dataset(root)
    assert not problems
    return DataSource(dataset, root, folder_version(dataset, root))


@pytest.fixture
def toy_backend() -> Iterator[str]:
    registry.BUILTIN["toy"] = "tests.training.toy:ToyBackend"
    registry.get_backend.cache_clear()
    yield "toy"
    del registry.BUILTIN["toy"]
    registry.get_backend.cache_clear()
