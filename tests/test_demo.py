"""The demo dataset `make run` stores: trainable, exact labels, and never mixed into a home that has data."""

from __future__ import annotations

from pathlib import Path

from cardmetry.data.synth.dataset import SynthOptions
from cardmetry.demo import seed_demo_dataset
from cardmetry.store.datasets import data_source, list_datasets
from cardmetry.store.home import Home

TINY = SynthOptions(count=2, seed=7, dpi=100)


def test_an_empty_home_gets_a_trainable_demo_dataset(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    reference = seed_demo_dataset(home, TINY)
    assert reference is not None and reference.startswith("demo@")
    source = data_source(home, reference)  # refuses a version with validation errors
    assert len(source.dataset.images) == 2
    assert {i.class_id for image in source.dataset.images for i in image.instances} == {0, 1}
    assert not [p for p in home.root.iterdir() if p.name.startswith(".demo-")]  # the scratch renders are gone


def test_a_home_with_data_is_left_alone(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    seed_demo_dataset(home, TINY)
    assert seed_demo_dataset(home, SynthOptions(count=3, seed=8, dpi=100)) is None
    assert len(list_datasets(home)) == 1
