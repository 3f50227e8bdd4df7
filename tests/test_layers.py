"""DESIGN.md's layers: each package imports only from the packages above it, and the pure ones stay pure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cardmetry"
ORDER = ["geometry", "measure", "data", "models", "training", "store", "orchestrator", "learning", "surface",
         "server"]
FORBIDDEN = {
    "geometry": {"torch", "torchvision"},
    "data": {"torch", "torchvision"},
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", ORDER)
def test_layer_imports_only_from_layers_above(layer: str) -> None:
    allowed = set(ORDER[: ORDER.index(layer) + 1])
    offences = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for name in imports_of(path):
            parts = name.split(".")
            if parts[0] == "cardmetry" and len(parts) > 1 and parts[1] in ORDER and parts[1] not in allowed:
                offences.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
            if parts[0] in FORBIDDEN.get(layer, set()):
                offences.append(f"{path.relative_to(PACKAGE.parent)} imports {name}, which {layer} must not")
    assert not offences, "\n".join(offences)
