"""Documentation that cannot fall behind the code: every command and option is in docs/cli.md."""

from __future__ import annotations

import re
from pathlib import Path

import typer.main
from typer.core import TyperGroup

from cardmetry.cli import app

DOCS = Path(__file__).resolve().parents[1] / "docs"


def commands(group: TyperGroup, prefix: str = "cardmetry") -> list[tuple[str, object]]:
    found = []
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        if isinstance(command, TyperGroup):
            found.extend(commands(command, path))
        else:
            found.append((path, command))
    return found


def sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def test_every_command_and_option_is_documented() -> None:
    documented = sections((DOCS / "cli.md").read_text())
    missing = []
    for path, command in commands(typer.main.get_command(app)):
        if path not in documented:
            missing.append(f"{path}: no section")
            continue
        for param in command.params:
            if param.param_type_name == "option" and "--help" not in param.opts:
                long = max(param.opts, key=len)
                if f"`{long}" not in documented[path]:
                    missing.append(f"{path}: option {long}")
    assert not missing, "undocumented in docs/cli.md:\n" + "\n".join(missing)


def test_every_route_of_the_web_app_is_documented(tmp_path: Path) -> None:
    from starlette.routing import WebSocketRoute

    from cardmetry.orchestrator.local import LocalExecutor
    from cardmetry.server.app import create_app
    from cardmetry.store.home import Home

    home = Home(tmp_path / "home")
    app = create_app(home, LocalExecutor(home))
    routes = [f"{method.upper()} {path}" for path, methods in app.openapi()["paths"].items() for method in methods]
    routes += [f"WS {route.path}" for route in flattened(app.routes) if isinstance(route, WebSocketRoute)]
    documented = (DOCS / "web-app.md").read_text()
    missing = [route for route in routes if f"`{route}`" not in documented]
    assert "WS /ws/runs/{run_id}" in routes and not missing, "undocumented in docs/web-app.md:\n" + "\n".join(missing)


def flattened(routes: list) -> list:
    """The routes of an app whose parts are included routers (each kept whole in `original_router`)."""
    found = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        found.extend(flattened(inner.routes) if inner is not None else [route])
    return found
