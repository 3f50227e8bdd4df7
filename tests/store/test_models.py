"""The predictors measuring uses for each role: loaded once per file, refused with a reason naming the role."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cardmetry.models.base import ModelSpec
from cardmetry.store.home import Home
from cardmetry.store.models import ModelUnavailableError, PredictorCache, load_role_models


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path / "home")


class StubPredictor:
    def __init__(self, classes: tuple[int, ...]) -> None:
        self.spec = ModelSpec("stub", "none", classes, 32)


def test_the_predictor_cache_loads_a_file_once_until_it_changes(tmp_path: Path) -> None:
    loaded: list[Path] = []
    cache = PredictorCache(lambda path: loaded.append(path) or StubPredictor((0,)))
    model = tmp_path / "best.pt"
    model.write_bytes(b"weights")
    first = cache.get(model)
    assert cache.get(tmp_path / "." / "best.pt") is first  # the same file by another spelling: a hit
    assert len(loaded) == 1 and cache.loads == 1
    stat = model.stat()
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # replaced: a resumed run's new best
    assert cache.get(model) is not first and cache.loads == 2


def test_a_role_without_a_run_is_classical_and_a_bad_run_is_named(home: Home) -> None:
    cache = PredictorCache(lambda path: StubPredictor((0,)))
    assert load_role_models(home, {"outer": None, "graphic": None}, cache) == {"outer": None, "graphic": None}
    with pytest.raises(ModelUnavailableError, match="the graphic model no-such-run cannot be used"):
        load_role_models(home, {"graphic": "no-such-run"}, cache)


def test_a_model_that_finds_the_other_border_is_refused(home: Home) -> None:
    checkpoint = home.runs / "r1" / "checkpoints" / "best.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"weights")
    outer_only = PredictorCache(lambda path: StubPredictor((0,)))
    assert load_role_models(home, {"outer": "r1"}, outer_only)["outer"] is not None
    with pytest.raises(ModelUnavailableError, match="finds classes \\[0\\], not the graphic border"):
        load_role_models(home, {"graphic": "r1"}, outer_only)


def test_one_file_named_for_both_roles_is_loaded_once(tmp_path: Path) -> None:
    both = tmp_path / "both.pt"
    both.write_bytes(b"weights")
    cache = PredictorCache(lambda path: StubPredictor((0, 1)))
    models = load_role_models(Home(tmp_path / "home"), {"outer": str(both), "graphic": str(both)}, cache)
    assert models["outer"] is models["graphic"] and cache.loads == 1
