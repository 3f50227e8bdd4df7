"""Grading: measure an uploaded card (front, and back if there is one) and show its overlay, centering table,
grade ceilings and flags, with the JSON and the customer report to download."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from cardmetry.server.context import ServerContext
from cardmetry.server.pages import page


def router(ctx: ServerContext) -> APIRouter:
    api = APIRouter()

    @api.get("/grade", response_class=HTMLResponse, include_in_schema=False)
    def grade_page(request: Request) -> HTMLResponse:
        return page(request, "grade.html", "Grade", "grade")

    return api
