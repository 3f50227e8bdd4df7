"""Gradings kept on disk: one folder per graded card, `HOME/measurements/<id>/`.

A folder holds, per side (front, and back where there is one): the uploaded image `<side>.<ext>`, the CONTRACT.md
document `<side>.json`, the overlay `<side>.overlay.png` and the customer's report `<side>.report.html`; and
`meta.json`, written last, so a folder without it is a grading still being written (or one that failed) and is
never listed. Every file is written whole or not at all (`measure.files`).

Ids are a sortable UTC time stamp and random hex (`20261129T110821123456-1a2b3c4d`); an id from a request is
checked against that exact pattern before it becomes a path, and so is every file name served.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
from PIL import Image

from cardmetry.data.images import IMAGE_SUFFIXES, ImageError, load_image
from cardmetry.geometry.specs import CardSpec
from cardmetry.measure.files import write_text_atomic
from cardmetry.measure.grades import GradeTable
from cardmetry.measure.outputs import document_text, write_pictures
from cardmetry.measure.pipeline import measure_image
from cardmetry.measure.result import Measurement, Refusal
from cardmetry.store.home import Home

if TYPE_CHECKING:  # torch loads only when a model is used: the server starts, and grades classically, without it
    from cardmetry.models.predictors import Predictor

SIDES = ("front", "back")
META_KEYS = ("id", "created", "sides", "name", "sha256", "outer_model", "graphic_model")  # indexed by the database
MAX_IMAGE_BYTES = 200 * 1024**2  # one uploaded side
CHUNK = 1024**2
_ID = re.compile(r"^\d{8}T\d{12}-[0-9a-f]{8}$")
# The files a grading folder serves: a side, then what of it. Nothing else in a folder is ever read by name.
_SERVED = re.compile(r"^(front|back)\.(json|overlay\.png|report\.html)$")
# Pillow's name of a format to the extension the uploaded image is kept under, when its own name has none.
_FORMAT_SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp"}


class TooLargeError(ValueError):
    """An uploaded image over MAX_IMAGE_BYTES; the message names it."""


class UnreadableImageError(ValueError):
    """An uploaded file that is no usable image; the message names the upload and what is wrong."""


def new_id(now: float | None = None) -> str:
    """A fresh grading id: later ids sort after earlier ones (to the microsecond), and two at once differ."""
    stamp = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return f"{stamp:%Y%m%dT%H%M%S%f}-{secrets.token_hex(4)}"


def check_id(measurement_id: str) -> str:
    """The id, or ValueError: anything but the exact pattern (a path, '..') never reaches the filesystem."""
    if not _ID.fullmatch(measurement_id):
        raise ValueError(f"invalid measurement id {measurement_id!r}")
    return measurement_id


def check_served_name(filename: str) -> str:
    """`front.json`, `back.overlay.png`, `front.report.html`...; ValueError for any other name."""
    if not _SERVED.fullmatch(filename):
        raise ValueError(f"{filename!r}: not a file a grading holds (SIDE.json, SIDE.overlay.png, SIDE.report.html)")
    return filename


def measurements_root(home: Home) -> Path:
    return home.root / "measurements"


def folder_of(home: Home, measurement_id: str) -> Path:
    """The folder of a grading (checked id); it may not exist."""
    return measurements_root(home) / check_id(measurement_id)


def shown_name(filename: str | None, side: str) -> str:
    """An upload's file name as it is shown and kept in meta.json: the last part of whatever the browser sent,
    without control characters, at most 255 characters; `<side>` when it sent none. Never used as a path."""
    text = "".join(ch for ch in (filename or "") if ch.isprintable())
    text = PurePosixPath(text.replace("\\", "/")).name[:255]
    return text or side


@dataclass(frozen=True)
class SavedImage:
    side: str
    name: str  # the upload's file name (shown_name)
    path: Path  # where it is kept: FOLDER/<side>.<ext>
    sha256: str


@dataclass(frozen=True)
class SideResult:
    saved: SavedImage
    result: Measurement | Refusal


class GradingFolder:
    """One grading while it is written: uploads are kept, each side measured, and `finish` writes meta.json.
    `discard` removes a folder that will not be finished, so nothing half-written stays behind."""

    def __init__(self, home: Home, measurement_id: str | None = None) -> None:
        self.id = check_id(measurement_id or new_id())
        self.path = folder_of(home, self.id)
        self.path.mkdir(parents=True, exist_ok=False)  # ids are unique: an existing folder is a bug, never reused
        self.created = time.time()

    def save_image(self, side: str, filename: str | None, stream: BinaryIO,
                   max_bytes: int | None = None) -> SavedImage:
        """Copy an uploaded side into the folder (at most `max_bytes`, default MAX_IMAGE_BYTES, counted as it is
        read, so an oversized upload stops there), hashing it on the way."""
        max_bytes = max_bytes or MAX_IMAGE_BYTES
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, not {side!r}")
        name = shown_name(filename, side)
        partial = self.path / f".{side}.part"
        digest = hashlib.sha256()
        size = 0
        try:
            with partial.open("wb") as out:
                while chunk := stream.read(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise TooLargeError(f"{side} image {name}: over the limit of {max_bytes // 1024**2} MB")
                    digest.update(chunk)
                    out.write(chunk)
            if size == 0:
                raise UnreadableImageError(f"{side} image {name}: empty file (0 bytes)")
            target = self.path / f"{side}{_suffix_for(name, partial)}"
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        return SavedImage(side, name, target, digest.hexdigest())

    def load(self, saved: SavedImage) -> np.ndarray:
        """The saved side's pixels; UnreadableImageError naming the upload (corrupt, truncated, too many pixels)."""
        try:
            return load_image(saved.path)
        except ImageError as error:
            raise UnreadableImageError(f"{saved.side} image {saved.name}: {error.problem}") from None

    def measure(
        self,
        saved: SavedImage,
        image: np.ndarray,
        card: CardSpec,
        tables: Sequence[GradeTable],
        models: Mapping[str, Predictor | None],
    ) -> SideResult:
        """Measure one side (with a model for each role that has one, the classical detector for the others) and
        write its document, overlay and report. A refusal is a result too: its document and pictures are kept."""
        outer, graphic = models.get("outer"), models.get("graphic")
        if outer is None and graphic is None:
            result = measure_image(image, card, side=saved.side, name=saved.name, grade_tables=tables)
        else:
            from cardmetry.models.measuring import measure_with_models  # only a model needs its machinery

            result = measure_with_models(image, card, outer=outer, graphic=graphic, side=saved.side,
                                         name=saved.name, grade_tables=tables)
        write_text_atomic(self.path / f"{saved.side}.json", document_text(result))
        write_pictures(image, result, self.path / f"{saved.side}.overlay.png",
                       self.path / f"{saved.side}.report.html")
        return SideResult(saved, result)

    def grade_side(
        self,
        side: str,
        filename: str | None,
        stream: BinaryIO,
        card: CardSpec,
        tables: Sequence[GradeTable],
        models: Mapping[str, Predictor | None],
    ) -> SideResult:
        """Keep, decode and measure one side, all in the caller's thread: its decoded pixels live only as long
        as this call, so a bounded pool of such calls bounds the images held in memory at once."""
        saved = self.save_image(side, filename, stream)
        return self.measure(saved, self.load(saved), card, tables, models)

    def finish(self, saved: Sequence[SavedImage], model_runs: Mapping[str, str | None]) -> dict[str, Any]:
        """Write meta.json (last: from now on the grading is listed) and return it."""
        by_side = {image.side: image for image in saved}
        sides = [side for side in SIDES if side in by_side]
        meta = {
            "id": self.id,
            "created": self.created,
            "sides": sides,
            "name": by_side[sides[0]].name,
            "sha256": {side: by_side[side].sha256 for side in sides},
            "outer_model": model_runs.get("outer"),
            "graphic_model": model_runs.get("graphic"),
        }
        write_text_atomic(self.path / "meta.json", json.dumps(meta, indent=1) + "\n")
        return meta

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _suffix_for(name: str, path: Path) -> str:
    """The kept image's extension: the upload's own where it is an image suffix, else its format's (from the
    header), else `.img` (load_image then names what is wrong with it)."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return suffix
    try:
        with Image.open(path) as image:
            return _FORMAT_SUFFIX.get(image.format or "", ".img")
    except Exception:  # any decoder failure on bad bytes: the measuring step reports the file as unreadable
        return ".img"


def read_meta(home: Home, measurement_id: str) -> dict[str, Any]:
    """A finished grading's meta.json; FileNotFoundError when there is none (unknown, or never finished)."""
    meta_file = folder_of(home, measurement_id) / "meta.json"
    if not meta_file.is_file():
        raise FileNotFoundError(f"no measurement {measurement_id!r}")
    return json.loads(meta_file.read_text(encoding="utf-8"))


def read_document(home: Home, measurement_id: str, side: str) -> dict[str, Any]:
    """A finished grading's CONTRACT document for one side; FileNotFoundError when it has no such side."""
    meta = read_meta(home, measurement_id)
    if side not in meta["sides"]:
        raise FileNotFoundError(f"measurement {measurement_id} has no {side} side")
    return json.loads((folder_of(home, measurement_id) / f"{side}.json").read_text(encoding="utf-8"))


def served_file(home: Home, measurement_id: str, filename: str) -> Path:
    """A file of a finished grading that may be sent (checked id and name); FileNotFoundError when absent."""
    check_served_name(filename)
    read_meta(home, measurement_id)  # an unfinished folder serves nothing
    path = folder_of(home, measurement_id) / filename
    if not path.is_file():
        raise FileNotFoundError(f"measurement {measurement_id} has no {filename}")
    return path


def recent(home: Home, limit: int = 50) -> list[dict[str, Any]]:
    """The newest finished gradings' meta, newest first. Folders without meta.json, and names that are not ids,
    are skipped."""
    root = measurements_root(home)
    if not root.is_dir():
        return []
    ids = sorted((entry.name for entry in root.iterdir() if _ID.fullmatch(entry.name)), reverse=True)
    found: list[dict[str, Any]] = []
    for measurement_id in ids:
        if len(found) >= limit:
            break
        try:
            found.append(read_meta(home, measurement_id))
        except (FileNotFoundError, json.JSONDecodeError):  # still being written, or damaged by hand: not listed
            continue
    return found
