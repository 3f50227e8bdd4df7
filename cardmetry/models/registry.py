"""Backends by name: the built-in ones, and any a third-party package declares in the entry-point group
`cardmetry.backends` (`name = "package.module:BackendClass"`), the way Datasette finds its plugins.

Modules are imported only when their backend is asked for, so an optional framework (Ultralytics, Detectron2)
is never imported by listing backends or by the core.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points

from cardmetry.models.base import Backend

ENTRY_POINT_GROUP = "cardmetry.backends"
BUILTIN: dict[str, str] = {
    "unet": "cardmetry.models.backends.unet:UNetBackend",
    "maskrcnn": "cardmetry.models.backends.maskrcnn:MaskRCNNBackend",
    "yolo-seg": "cardmetry.models.backends.yolo:YoloSegBackend",
    "detectron2": "cardmetry.models.backends.detectron2:Detectron2Backend",
    "classical": "cardmetry.models.backends.classical:ClassicalBackend",
}


@dataclass(frozen=True)
class BackendInfo:
    name: str
    description: str
    variants: dict[str, str]
    default_variant: str
    trainable: bool
    unavailable: str | None  # why it cannot run here; None when it can

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "description": self.description,
            "variants": self.variants,
            "default_variant": self.default_variant,
            "trainable": self.trainable,
            "available": self.unavailable is None,
            "unavailable": self.unavailable,
        }


def _targets() -> dict[str, str]:
    targets = dict(BUILTIN)
    for point in entry_points(group=ENTRY_POINT_GROUP):
        targets.setdefault(point.name, point.value)  # a plugin cannot silently replace a built-in backend
    return targets


def backend_names() -> list[str]:
    return list(_targets())


@cache
def get_backend(name: str) -> Backend:
    """The backend called `name`; KeyError listing the known names when there is none."""
    targets = _targets()
    if name not in targets:
        raise KeyError(f"unknown backend {name!r}; known backends: {', '.join(targets)}")
    module_name, _, attribute = targets[name].partition(":")
    backend = getattr(importlib.import_module(module_name), attribute)()
    if not isinstance(backend, Backend):
        raise TypeError(f"backend {name!r} ({targets[name]}) is not a cardmetry.models.base.Backend")
    return backend


def list_backends() -> list[BackendInfo]:
    infos = []
    for name in backend_names():
        try:
            backend = get_backend(name)
        except Exception as error:  # a broken plugin is listed with its error, not hidden
            infos.append(BackendInfo(name, "", {}, "", False, f"cannot be loaded: {error}"))
            continue
        infos.append(
            BackendInfo(
                name,
                backend.description,
                dict(backend.variants),
                backend.default_variant,
                backend.trainable,
                backend.unavailable_reason(),
            )
        )
    return infos
