"""Server-rendered pages: Jinja2 templates with a little JavaScript each, no build step. Static files (the page
scripts, the style sheet and Chart.js, shipped in the package) are served under /static."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

HERE = Path(__file__).parent
STATIC = HERE / "static"
NAV = (("datasets", "/datasets", "Datasets"), ("train", "/train", "Train"), ("models", "/models", "Models"),
       ("grade", "/grade", "Grade"))

templates = Jinja2Templates(directory=HERE / "templates")


def page(request: Request, template: str, title: str, section: str, **values: Any) -> HTMLResponse:
    """A page in the site's frame: `section` is the navigation entry shown as current."""
    return templates.TemplateResponse(
        request, template, {"title": title, "section": section, "nav": NAV, **values}
    )
