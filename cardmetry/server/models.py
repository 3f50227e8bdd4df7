"""Models: each role's trained versions with their metrics and run, comparison, and the choice measuring uses.

A model version is a run that ended (succeeded, or stopped) with a best checkpoint; the catalog indexes them from
the run folders (cardmetry.store.database). Each list or choice syncs the catalog first, so a run that ended a
moment ago is there without waiting for the background sync.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict

from cardmetry.server.context import ServerContext
from cardmetry.server.errors import error_responses
from cardmetry.server.pages import page
from cardmetry.store.models import MODEL_ROLES
from cardmetry.training.runs import check_run_id

ModelRole = Literal["outer", "graphic"]


class ActiveChoice(BaseModel):
    """PUT /api/models/active: the run measuring uses for `role`; null for the classical detector alone."""

    model_config = ConfigDict(extra="forbid")
    role: ModelRole
    run_id: str | None


def router(ctx: ServerContext) -> APIRouter:
    api = APIRouter()

    def checked(run_id: str, field: str) -> str:
        try:
            return check_run_id(run_id)
        except ValueError as error:
            raise HTTPException(404, f"{field}: {error}") from None

    def model_or_404(run_id: str, field: str = "run_id") -> dict[str, Any]:
        found = ctx.catalog.model(checked(run_id, field))
        if found is None:
            raise HTTPException(404, f"{field}: run {run_id!r} is not a model (no such run, or it has not ended "
                                     f"with a best checkpoint)")
        return found

    def with_use(found: dict[str, Any], active: dict[str, str | None]) -> dict[str, Any]:
        return {**found, "in_use_for": [role for role in MODEL_ROLES if active[role] == found["run_id"]]}

    @api.get("/api/models")
    def list_models(role: ModelRole | None = None) -> list[dict[str, Any]]:
        """Model versions, newest first, each with the roles it is in use for."""
        ctx.catalog.sync()
        active = ctx.catalog.active_models()
        return [with_use(found, active) for found in ctx.catalog.models(role)]

    @api.get("/api/models/active")
    def active_models() -> dict[str, str | None]:
        return ctx.catalog.active_models()

    @api.put("/api/models/active", responses=error_responses(400, 404, 409, 422))
    def choose_model(choice: ActiveChoice) -> dict[str, str | None]:
        ctx.catalog.sync()
        if choice.run_id is not None:
            model_or_404(choice.run_id)
        try:
            ctx.catalog.set_active_model(choice.role, choice.run_id)
        except ValueError as error:
            raise HTTPException(409, str(error)) from None
        return ctx.catalog.active_models()

    @api.get("/api/models/compare", responses=error_responses(404, 422))
    def compare_models(a: str = Query(...), b: str = Query(...)) -> dict[str, Any]:
        """Two models' metrics side by side, and which one is better by each metric's direction."""
        ctx.catalog.sync()
        model_or_404(a, "a")
        model_or_404(b, "b")
        return ctx.catalog.compare(a, b)

    @api.get("/api/models/{run_id}", responses=error_responses(404))
    def one_model(run_id: str) -> dict[str, Any]:
        ctx.catalog.sync()
        return with_use(model_or_404(run_id), ctx.catalog.active_models())

    @api.get("/models", response_class=HTMLResponse, include_in_schema=False)
    def models_page(request: Request) -> HTMLResponse:
        return page(request, "models.html", "Models", "models", roles=MODEL_ROLES)

    return api
