"""Datasets: uploads (many files or zips at once, stored by content as a new version), every stored version with
its validation report and stats, a gallery of each version's images with the labels drawn, box-to-polygon
refinement into a new version, and the datasets pages.

Names, versions and image digests from a request are checked against strict patterns before they name anything on
disk, and an image is served only through a version that holds it. Everything that reads many files or pixels
runs in a thread, so the server keeps answering meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse
from starlette.datastructures import UploadFile

from cardmetry.data.images import ImageError
from cardmetry.data.stats import dataset_stats
from cardmetry.server.context import ServerContext
from cardmetry.server.errors import error_responses
from cardmetry.server.pages import page
from cardmetry.server.threads import run_long
from cardmetry.store.blobs import BlobStore
from cardmetry.store.datasets import check_name, list_datasets, load_version, refine_version
from cardmetry.store.home import Home
from cardmetry.store.thumbnails import SIZES as THUMBNAIL_SIZES
from cardmetry.store.thumbnails import cached_thumbnail
from cardmetry.store.uploads import MAX_FILES, UploadError, store_upload

VERSION = re.compile(r"^[0-9a-f]{12}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
GALLERY_PAGE = 48  # images per gallery page unless asked otherwise
GALLERY_MAX = 200
THUMBNAIL_SIZE = 256  # the gallery's pictures; FULL_SIZE when one is opened (both among THUMBNAIL_SIZES)
FULL_SIZE = 1024
DIGITS = re.compile(r"(\d+)")
FORM_FIELDS = 100  # text fields an upload may carry besides its files (it needs none)
# The form the upload route reads by hand (past the framework's 1000-file cap), described for the OpenAPI document,
# which cannot see it.
UPLOAD_BODY = {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object",
    "required": ["files"],
    "properties": {"files": {
        "type": "array",
        "minItems": 1,
        "items": {"type": "string", "format": "binary"},
        "description": "images and labels, each under its path relative to the dataset's root, or zip archives",
    }},
}}}}


def created_at(seconds: float) -> str:
    """A manifest's modification time as ISO 8601 in UTC, the form every page shows and sorts."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def manifest_path(home: Home, name: str, version: str) -> Path:
    """Where the manifest of `name`/`version` is, or 404 saying which part is wrong (never a path outside the
    datasets)."""
    try:
        check_name(name)
    except ValueError as error:
        raise HTTPException(404, str(error)) from None
    if not VERSION.match(version):
        raise HTTPException(404, f"invalid dataset version {version!r}: 12 hexadecimal digits")
    return home.datasets / name / version / "manifest.json"


@lru_cache(maxsize=32)
def _read_manifest(path: Path, modified_ns: int) -> dict[str, Any]:
    """A manifest parsed once: versions never change, and the modification time in the key covers a rewrite."""
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def version_document(home: Home, name: str, version: str) -> dict[str, Any]:
    """The manifest of `name`/`version`, or 404 saying which part is wrong."""
    return _manifest_and_key(home, name, version)[0]


def gallery_order(home: Home, name: str, version: str) -> tuple[dict[str, Any], ...]:
    """The version's images in the gallery's order: by name, numbers by their value (scan2 before scan10)."""
    _, manifest, modified_ns = _manifest_and_key(home, name, version)
    return _sorted_images(manifest, modified_ns)


def _manifest_and_key(home: Home, name: str, version: str) -> tuple[dict[str, Any], Path, int]:
    manifest = manifest_path(home, name, version)
    try:
        modified_ns = manifest.stat().st_mtime_ns
        return _read_manifest(manifest, modified_ns), manifest, modified_ns
    except FileNotFoundError:
        raise HTTPException(404, f"no dataset version {name}/{version}") from None
    except (OSError, ValueError) as error:
        raise HTTPException(500, f"{name}/{version}: the manifest cannot be read ({error})") from None


def name_key(name: str) -> tuple[str | int, ...]:
    """A sort key that reads runs of digits as numbers: "card_9" before "card_10". Text and numbers alternate at
    the same places in every key (re.split puts the digits at odd indices), so keys always compare."""
    return tuple(int(part) if index % 2 else part.casefold() for index, part in enumerate(DIGITS.split(name)))


@lru_cache(maxsize=32)
def _sorted_images(manifest: Path, modified_ns: int) -> tuple[dict[str, Any], ...]:
    """Sorted once per version (a page of a large gallery must not sort it again); the name and then the digest
    break ties, so the order is total and paging through it never shows an image twice or skips one."""
    entries = _read_manifest(manifest, modified_ns)["images"]
    return tuple(sorted(entries, key=lambda e: (name_key(str(e["name"])), str(e["name"]), str(e["sha256"]))))


def version_report(home: Home, document: dict[str, Any]) -> dict[str, Any]:
    """What the version page shows above the gallery: the validation report, the classes and the stats."""
    dataset, _ = load_version(home, document["name"], document["version"])
    dataset.format = str(document.get("source_format", ""))
    validation = document.get("validation") or {}
    problems = list(validation.get("problems", []))
    manifest = home.datasets / document["name"] / document["version"] / "manifest.json"
    return {
        "name": document["name"],
        "version": document["version"],
        "format": document.get("source_format", ""),
        "created": created_at(manifest.stat().st_mtime),
        "derived_from": document.get("derived_from"),
        "classes": list(document["classes"]),
        "images": len(document["images"]),
        "trainable": bool(validation.get("trainable", True)),
        "errors": sum(p.get("severity") == "error" for p in problems),
        "warnings": sum(p.get("severity") == "warning" for p in problems),
        "problems": problems,
        "stats": dataset_stats(dataset),
    }


def gallery_entry(home: Home, entry: dict[str, Any]) -> dict[str, Any]:
    blob = BlobStore(home.blobs).path_for(str(entry["sha256"]))
    return {
        "sha256": entry["sha256"],
        "name": entry["name"],
        "width": entry["width"],
        "height": entry["height"],
        "bytes": blob.stat().st_size if blob.is_file() else None,
        "instances": len(entry["instances"]),
        "boxes": sum(bool(i["is_box"]) for i in entry["instances"]),
    }


def router(ctx: ServerContext) -> APIRouter:
    api = APIRouter()
    home = ctx.home

    @api.get("/datasets", response_class=HTMLResponse, include_in_schema=False)
    def datasets_page(request: Request) -> HTMLResponse:
        return page(request, "datasets.html", "Datasets", "datasets", max_files=MAX_FILES)

    @api.get("/datasets/{name}/{version}", response_class=HTMLResponse, include_in_schema=False)
    def dataset_page(request: Request, name: str, version: str) -> HTMLResponse:
        version_document(home, name, version)  # 404 before a page is drawn for nothing
        return page(request, "dataset.html", f"Dataset {name}", "datasets", name=name, version=version,
                    thumbnail_size=THUMBNAIL_SIZE, full_size=FULL_SIZE, gallery_page=GALLERY_PAGE)

    @api.get("/api/datasets")
    def list_versions() -> list[dict[str, Any]]:
        """Every stored version, newest first."""
        return [
            {"name": info.name, "version": info.version, "images": info.images, "trainable": info.trainable,
             "problems": info.problems, "format": info.source_format, "created": created_at(info.created)}
            for info in list_datasets(home)
        ]

    @api.post("/api/datasets/{name}/upload", status_code=201, responses=error_responses(400, 413, 422),
              openapi_extra={"requestBody": UPLOAD_BODY})
    async def upload_dataset(name: str, request: Request) -> dict[str, Any]:
        """Store the files (multipart field `files`: images and labels, each under the relative path given, or
        zip archives of them) as a new version of dataset `name`, and say what was stored and what the
        validation found."""
        # The name first: a bad one is refused before up to MAX_UPLOAD_BYTES are received and spooled to disk.
        try:
            check_name(name)
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
        # Read here rather than as a parameter: the framework's own form reading stops at 1000 files, and one
        # folder of 564 scans with their labels is 1128.
        form = await request.form(max_files=MAX_FILES, max_fields=FORM_FIELDS)
        try:
            given = [(upload.filename or "", upload.file) for upload in form.getlist("files")
                     if isinstance(upload, UploadFile)]
            if not given:
                raise HTTPException(422, "files: no files in the upload (multipart field 'files')")
            try:
                result = await run_long(store_upload, home, name, given)
            except UploadError as error:
                raise HTTPException(413 if error.too_large else 400, str(error)) from None
            except ValueError as error:
                raise HTTPException(400, str(error)) from None
        finally:
            await form.close()
        stored = result.stored
        return {"name": stored.name, "version": stored.version, "files": result.files, "images": stored.images,
                "new_images": stored.new_blobs, "trainable": stored.trainable, "problems": result.problems,
                "duplicates": [{"kept": kept, "duplicate": duplicate} for kept, duplicate in stored.duplicates]}

    @api.get("/api/datasets/{name}/{version}", responses=error_responses(404))
    async def version_detail(name: str, version: str) -> dict[str, Any]:
        """The validation report (every problem with file, line, severity and message), classes and stats."""
        document = version_document(home, name, version)
        return await asyncio.to_thread(version_report, home, document)

    @api.get("/api/datasets/{name}/{version}/images", responses=error_responses(404, 422))
    def version_images(
        name: str, version: str, offset: int = Query(0, ge=0), limit: int = Query(GALLERY_PAGE, ge=1, le=GALLERY_MAX)
    ) -> dict[str, Any]:
        """One page of the gallery, the images sorted by name (see gallery_order)."""
        entries = gallery_order(home, name, version)
        shown = entries[offset:offset + limit]
        return {"total": len(entries), "offset": offset, "limit": limit,
                "images": [gallery_entry(home, entry) for entry in shown]}

    @api.get("/api/datasets/{name}/{version}/images/{sha256}.jpg", response_class=FileResponse,
             responses={200: {"content": {"image/jpeg": {}}}, **error_responses(404, 422)})
    async def version_thumbnail(
        name: str, version: str, sha256: str,
        size: int = Query(THUMBNAIL_SIZE, json_schema_extra={"enum": list(THUMBNAIL_SIZES)}),
    ) -> FileResponse:
        """The image scaled to `size` pixels on its longest side (one of THUMBNAIL_SIZES; never enlarged), outer
        labels drawn in cyan and graphic ones in magenta. Only an image of this version is served."""
        if size not in THUMBNAIL_SIZES:
            allowed = ", ".join(map(str, THUMBNAIL_SIZES))
            raise HTTPException(422, f"size: {size} is not a thumbnail size; use one of {allowed} (pixels)")
        if not SHA256.match(sha256):
            raise HTTPException(404, f"{sha256!r} is not an image digest (64 hexadecimal digits)")
        document = version_document(home, name, version)
        entry = next((e for e in document["images"] if e["sha256"] == sha256), None)
        if entry is None:
            raise HTTPException(404, f"no image {sha256[:12]}... in {name}/{version}")
        try:
            path = await asyncio.to_thread(cached_thumbnail, home, entry, size)
        except ImageError as error:
            raise HTTPException(422, f"{entry['name']}: {error.problem}") from None
        # The key names the content and the labels: the picture at this address never changes.
        return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})

    @api.post("/api/datasets/{name}/{version}/refine", status_code=201, responses=error_responses(404, 409))
    async def refine(name: str, version: str) -> dict[str, Any]:
        """Box-to-polygon refinement, stored as a new version of the dataset: which version, how many boxes were
        refined, and each refused box with its image and the reason."""
        version_document(home, name, version)
        try:
            outcome = await run_long(refine_version, home, name, version)
        except ValueError as error:
            raise HTTPException(409, str(error)) from None
        stored = outcome.stored
        return {"name": stored.name, "version": stored.version, "source_version": outcome.source_version,
                "new": stored.version != outcome.source_version, "boxes": outcome.boxes, "refined": outcome.refined,
                "refusals": outcome.refusals, "unreadable": outcome.unreadable, "trainable": stored.trainable}

    return api
