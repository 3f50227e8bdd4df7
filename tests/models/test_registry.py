"""The backend registry: built-in backends, third-party ones through entry points, and the docs that list them."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from cardmetry.models import registry
from cardmetry.models.backends.detectron2 import NOT_INSTALLED
from cardmetry.models.base import Backend
from cardmetry.models.registry import BUILTIN, backend_names, get_backend, list_backends

ROOT = Path(__file__).resolve().parents[2]


class PluginBackend(Backend):
    """A third-party backend, as a plugin package would declare it."""

    name = "plugin-seg"
    description = "a plugin"
    variants: Mapping[str, str] = {"tiny": "the only one"}
    default_variant = "tiny"


class NotABackend:
    name = "impostor"


@pytest.fixture
def plugins(monkeypatch):
    """Declare entry points in the cardmetry.backends group (name -> module:attribute) for one test."""
    get_backend.cache_clear()

    def declare(points: dict[str, str]) -> None:
        fake = [EntryPoint(name, value, registry.ENTRY_POINT_GROUP) for name, value in points.items()]
        monkeypatch.setattr(registry, "entry_points", lambda group: fake if group == registry.ENTRY_POINT_GROUP else [])

    yield declare
    get_backend.cache_clear()


def _ultralytics_installed() -> bool:
    return importlib.util.find_spec("ultralytics") is not None


@pytest.mark.parametrize("name", list(BUILTIN))
def test_every_builtin_backend_resolves(name):
    backend = get_backend(name)
    assert backend.name == name
    assert backend.default_variant in backend.variants


@pytest.mark.parametrize(
    ("name", "available"),
    [
        ("detectron2", importlib.util.find_spec("detectron2") is not None),  # not on PyPI: absent here
        ("yolo-seg", _ultralytics_installed()),  # the optional extra
        ("classical", True),  # no package needed
    ],
)
def test_availability_is_reported_with_a_reason(name, available):
    info = next(info for info in list_backends() if info.name == name)
    assert (info.unavailable is None) == available
    assert info.as_json()["available"] == available
    if not available:
        assert info.unavailable


@pytest.mark.skipif(importlib.util.find_spec("detectron2") is not None, reason="detectron2 is installed here")
def test_detectron2_says_how_to_get_it_and_refuses_to_build():
    from cardmetry.models.base import BackendUnavailableError, ModelSpec

    backend = get_backend("detectron2")
    assert backend.unavailable_reason() == NOT_INSTALLED
    assert "not on PyPI" in NOT_INSTALLED and "github.com/facebookresearch/detectron2" in NOT_INSTALLED
    spec = ModelSpec("detectron2", backend.default_variant, (0,), 256)
    for attempt in (
        lambda: backend.build(spec),
        lambda: backend.fit(None, None),
        lambda: backend.losses(None, None, []),
    ):
        with pytest.raises(BackendUnavailableError, match="not installed"):
            attempt()


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError) as error:
        get_backend("no-such-backend")
    for name in BUILTIN:
        assert name in str(error.value)


@pytest.mark.parametrize(
    ("points", "name", "expected"),
    [
        # a plugin's backend is found by its entry-point name and listed after the built-ins
        ({"plugin-seg": f"{__name__}:PluginBackend"}, "plugin-seg", PluginBackend),
        # a plugin cannot replace a built-in: the built-in wins
        ({"unet": f"{__name__}:PluginBackend"}, "unet", None),
    ],
)
def test_plugins_are_found_through_entry_points(plugins, points, name, expected):
    plugins(points)
    assert backend_names()[: len(BUILTIN)] == list(BUILTIN)
    backend = get_backend(name)
    if expected is None:
        assert not isinstance(backend, PluginBackend) and type(backend).__module__.startswith("cardmetry.")
    else:
        assert isinstance(backend, expected) and name in backend_names()
        info = next(info for info in list_backends() if info.name == name)
        assert info.variants == {"tiny": "the only one"} and info.unavailable is None


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_package.module:Backend", "No module named"),  # a plugin whose package is gone
        (f"{__name__}:Missing", "Missing"),  # an attribute that is not there
        (f"{__name__}:NotABackend", "is not a cardmetry.models.base.Backend"),  # not a Backend subclass
    ],
)
def test_a_broken_plugin_is_listed_with_its_error(plugins, target, message):
    plugins({"broken": target})
    info = next(info for info in list_backends() if info.name == "broken")
    assert not info.trainable and info.unavailable.startswith("cannot be loaded:") and message in info.unavailable
    others = [info for info in list_backends() if info.name in BUILTIN]
    assert len(others) == len(BUILTIN)  # the broken one hides nothing else


def _documented() -> str:
    return "\n".join(
        path.read_text() for path in (ROOT / "DEVELOPERS.md", ROOT / "docs" / "models.md") if path.exists()
    )


@pytest.mark.parametrize("name", list(BUILTIN))
def test_every_backend_and_variant_is_documented(name):
    docs = _documented()
    assert f"`{name}`" in docs, f"backend {name} is not in DEVELOPERS.md or docs/models.md"
    for variant in get_backend(name).variants:
        assert f"`{variant}`" in docs, f"variant {variant} of {name} is not documented"
