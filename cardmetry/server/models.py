"""Models: each role's trained versions with their metrics and run, comparison, and the choice measuring uses."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from cardmetry.server.context import ServerContext
from cardmetry.server.pages import page


def router(ctx: ServerContext) -> APIRouter:
    api = APIRouter()

    @api.get("/models", response_class=HTMLResponse, include_in_schema=False)
    def models_page(request: Request) -> HTMLResponse:
        return page(request, "models.html", "Models", "models")

    return api
