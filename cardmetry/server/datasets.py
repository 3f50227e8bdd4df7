"""Datasets: uploads (many files or zips at once, stored by content as a new version) and the datasets pages."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse

from cardmetry.server.context import ServerContext
from cardmetry.server.pages import page
from cardmetry.store.uploads import UploadError, store_upload


def router(ctx: ServerContext) -> APIRouter:
    api = APIRouter()

    @api.get("/datasets", response_class=HTMLResponse, include_in_schema=False)
    def datasets_page(request: Request) -> HTMLResponse:
        return page(request, "datasets.html", "Datasets", "datasets")

    @api.post("/api/datasets/{name}/upload", status_code=201)
    async def upload_dataset(name: str, files: list[UploadFile]) -> dict[str, Any]:
        """Store the files (images and labels, each under the relative path given, or zip archives of them) as a
        new version of dataset `name`, and say what was stored and what the validation found."""
        given = [(upload.filename or "", upload.file) for upload in files]
        try:
            result = await asyncio.to_thread(store_upload, ctx.home, name, given)
        except UploadError as error:
            raise HTTPException(413 if error.too_large else 400, str(error)) from None
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
        stored = result.stored
        return {"name": stored.name, "version": stored.version, "files": result.files, "images": stored.images,
                "new_images": stored.new_blobs, "trainable": stored.trainable, "problems": result.problems,
                "duplicates": [{"kept": kept, "duplicate": duplicate} for kept, duplicate in stored.duplicates]}

    return api
