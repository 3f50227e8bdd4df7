"""Grading: measure an uploaded card (front, and back if there is one) and show its overlay, centering table,
grade ceilings and flags, with the JSON and the customer report to download.

The measuring itself is the measure layer's (through `store.measurements`, which keeps each grading's folder);
this module reads the upload with its size capped, loads the models and keeps, decodes and measures each side in
the long-work threads (`server.threads`: at most a couple of decoded images in memory at once, and the server
keeps answering), and serves the files back. A refused card is an answer like any other (`status: refused` with
its reason); only an upload that is not a usable image is an HTTP error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException

from cardmetry.geometry.specs import CardSpec, card_spec
from cardmetry.measure.grades import GradeTable, load_tables
from cardmetry.server.context import ServerContext
from cardmetry.server.errors import error_responses
from cardmetry.server.pages import page
from cardmetry.server.threads import run_long
from cardmetry.store.measurements import (
    MAX_IMAGE_BYTES,
    SIDES,
    GradingFolder,
    SideResult,
    TooLargeError,
    UnreadableImageError,
    check_id,
    check_served_name,
    read_document,
    read_meta,
    recent,
    served_file,
)
from cardmetry.store.models import ModelUnavailableError, PredictorCache, load_role_models

if TYPE_CHECKING:
    from cardmetry.models.predictors import Predictor

SPECS = ("standard", "small")
MAX_FORM_BYTES = len(SIDES) * MAX_IMAGE_BYTES + 1024**2  # both images and the small fields around them
MEDIA_TYPES = {"json": "application/json", "overlay.png": "image/png", "report.html": "text/html; charset=utf-8"}
# The form POST /api/grade reads by hand, described for the OpenAPI document (the route takes no parameters).
GRADE_REQUEST_BODY = {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object",
    "required": ["front"],
    "properties": {
        "front": {"type": "string", "format": "binary", "description": "the card's front (an image)"},
        "back": {"type": "string", "format": "binary", "description": "the card's back (an image), optional"},
        "spec": {"type": "string", "enum": list(SPECS), "default": SPECS[0]},
    },
}}}}
# The report is our own HTML with its images inline; it is served with no right to run or fetch anything.
REPORT_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def router(ctx: ServerContext) -> APIRouter:
    api = APIRouter()
    tables = load_tables()  # the bundled grade tables, read once
    predictors = PredictorCache()  # models stay loaded between cards

    @api.get("/grade", response_class=HTMLResponse, include_in_schema=False)
    def grade_page(request: Request) -> HTMLResponse:
        return page(request, "grade.html", "Grade", "grade", specs=SPECS)

    @api.post("/api/grade", status_code=201, openapi_extra={"requestBody": GRADE_REQUEST_BODY},
              responses=error_responses(400, 409, 413, 422))
    async def grade(request: Request) -> dict[str, Any]:
        """Measure a card. Multipart form: `front` (an image, required), `back` (optional), `spec` (standard or
        small). Each side is measured with the models the database marks as measuring, the classical detector
        for a role without one. 400 for a file that is not a usable image (naming it), 413 over the size limit,
        409 when a chosen model cannot be loaded."""
        form = await _read_form(request)
        try:
            uploads = _side_uploads(form)
            card = _card(form)
            model_runs = await asyncio.to_thread(_active_models, ctx)  # a database read: off the event loop
            try:
                models = await run_long(load_role_models, ctx.home, model_runs, predictors)  # a load takes seconds
            except ModelUnavailableError as error:
                raise HTTPException(409, f"{error}; choose another model on the Models page") from None
            folder = GradingFolder(ctx.home)
            try:
                results = await _measure_sides(folder, uploads, card, tables, models)
                meta = await asyncio.to_thread(folder.finish, [side.saved for side in results], model_runs)
            except TooLargeError as error:
                folder.discard()
                raise HTTPException(413, str(error)) from None
            except UnreadableImageError as error:
                folder.discard()
                raise HTTPException(400, str(error)) from None
            except BaseException:  # nothing half-written stays: a folder without meta.json is removed
                folder.discard()
                raise
        finally:
            await form.close()
        return _answer(meta, {side.saved.side: side.result.as_json() for side in results})

    @api.get("/api/measurements")
    def list_measurements(limit: int = Query(50, ge=1, le=500)) -> list[dict[str, Any]]:
        """The newest gradings first: each one's meta.json with the status of each side."""
        listed = []
        for meta in recent(ctx.home, limit):
            try:
                status = {side: read_document(ctx.home, meta["id"], side)["status"] for side in meta["sides"]}
            except (OSError, ValueError, KeyError, TypeError) as error:  # JSONDecodeError is a ValueError
                # One folder damaged by hand (or by a full disk) must not hide every other grading.
                logging.getLogger(__name__).warning("grading %s is not listed: %s", meta.get("id"), error)
                continue
            listed.append({**meta, "status": status})
        return listed

    @api.get("/api/measurements/{measurement_id}", responses=error_responses(404))
    def get_measurement(measurement_id: str) -> dict[str, Any]:
        """A grading as POST /api/grade answered it."""
        try:
            meta = read_meta(ctx.home, measurement_id)
            documents = {side: read_document(ctx.home, measurement_id, side) for side in meta["sides"]}
        except (ValueError, FileNotFoundError) as error:
            raise HTTPException(404, str(error)) from None
        return _answer(meta, documents)

    @api.get("/api/measurements/{measurement_id}/{filename}", response_class=FileResponse,
             responses=error_responses(404, 422))
    def measurement_file(measurement_id: str, filename: str, download: bool = False) -> FileResponse:
        """SIDE.json, SIDE.overlay.png or SIDE.report.html; `?download=1` sends it as an attachment."""
        try:
            path = served_file(ctx.home, check_id(measurement_id), check_served_name(filename))
        except (ValueError, FileNotFoundError) as error:
            raise HTTPException(404, str(error)) from None
        kind = filename.split(".", 1)[1]
        headers = {"X-Content-Type-Options": "nosniff"}
        if kind == "report.html":
            headers["Content-Security-Policy"] = REPORT_POLICY
        return FileResponse(
            path,
            media_type=MEDIA_TYPES[kind],
            headers=headers,
            filename=f"cardmetry-{measurement_id}-{filename}" if download else None,
            content_disposition_type="attachment" if download else "inline",
        )

    return api


async def _read_form(request: Request) -> FormData:
    """The multipart form; 400 if it is not one. Its size is bounded as it arrives by the app's body limit
    (`app.body_limits`: MAX_FORM_BYTES on this route), each image's by `GradingFolder.save_image`."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise HTTPException(400, "send the card as multipart/form-data: front (an image), back, spec")
    try:
        return await request.form(max_files=len(SIDES), max_fields=8)
    except MultiPartException as error:
        raise HTTPException(400, f"the upload is not a readable form: {error.message}") from None


def _side_uploads(form: FormData) -> list[tuple[str, UploadFile]]:
    """(side, file) for front and, where one was chosen, back. A browser sends an empty file input as a part
    with no name and no bytes (some clients as an empty text field): that is no back. 422 without a front, or
    with a side that is not a file."""
    uploads = []
    for side in SIDES:
        value = form.get(side)
        if value is None or value == "" or (isinstance(value, UploadFile) and not value.filename and not value.size):
            continue
        if not isinstance(value, UploadFile):
            raise HTTPException(422, f"{side}: must be an image file, not a text field")
        uploads.append((side, value))
    if not uploads or uploads[0][0] != "front":
        raise HTTPException(422, "front: an image of the card's front is required")
    return uploads


def _card(form: FormData) -> CardSpec:
    name = form.get("spec") or "standard"
    if not isinstance(name, str) or name not in SPECS:
        raise HTTPException(422, f"spec: must be one of {', '.join(SPECS)}, not {name!r}")
    return card_spec(name)


def _active_models(ctx: ServerContext) -> dict[str, str | None]:
    """The run id that measures each role, as the database has it (None: the classical detector)."""
    chosen = ctx.catalog.active_models()
    return {"outer": chosen.get("outer"), "graphic": chosen.get("graphic")}


async def _measure_sides(
    folder: GradingFolder, uploads: Sequence[tuple[str, UploadFile]], card: CardSpec, tables: Sequence[GradeTable],
    models: Mapping[str, Predictor | None],
) -> list[SideResult]:
    """Measure the sides at the same time, each kept, decoded and measured in one long-work job (so no decoded
    image waits in memory for a thread). A side that is too large or unreadable refuses the whole grading."""
    measured = await asyncio.gather(
        *(run_long(folder.grade_side, side, upload.filename, upload.file, card, tables, models)
          for side, upload in uploads),
        return_exceptions=True,  # every thread ends before the folder may be discarded
    )
    results: list[SideResult] = []
    for outcome in measured:
        if isinstance(outcome, BaseException):
            raise outcome
        results.append(outcome)
    return results


def _urls(measurement_id: str, side: str) -> dict[str, str]:
    base = f"/api/measurements/{measurement_id}/{side}"
    return {"json": f"{base}.json", "overlay": f"{base}.overlay.png", "report": f"{base}.report.html"}


def _answer(meta: dict[str, Any], documents: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What the page shows: each side's document with the addresses of its files, and the models used."""
    return {
        "id": meta["id"],
        "created": meta["created"],
        "name": meta["name"],
        "sides": {side: {"document": documents[side], **_urls(meta["id"], side)} for side in meta["sides"]},
        "models": {"outer": meta["outer_model"], "graphic": meta["graphic_model"]},
    }
