"""Immutable dataset versions in CARDMETRY_HOME.

A version is a manifest naming each image by its content hash, with its labels and its validation report. Its id
is the hash of that content, so importing the same images and labels again gives the same version, stores no
byte twice, and a version can never change once written.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cardmetry.data.formats import dataset_root
from cardmetry.data.instances import Dataset, Instance, LabeledImage
from cardmetry.data.problems import Problem, has_errors
from cardmetry.data.validation import validate
from cardmetry.measure.files import write_text_atomic
from cardmetry.store.blobs import BlobStore
from cardmetry.store.home import Home
from cardmetry.training.sources import DataSource, folder_version

MANIFEST_SCHEMA = "cardmetry.dataset/v1"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class ImportResult:
    name: str
    version: str
    manifest: Path
    images: int  # distinct images in the version
    new_blobs: int  # images whose bytes were not stored before
    duplicates: list[tuple[str, str]]  # (kept name, duplicate name) for the same content under two names
    trainable: bool


def check_name(name: str) -> str:
    """Dataset names become folder names: letters, digits, '.', '_' and '-', starting with a letter or digit."""
    if not _NAME.match(name) or name in {".", ".."}:
        raise ValueError(f"invalid dataset name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    return name


def import_dataset(
    home: Home,
    name: str,
    dataset: Dataset,
    source_root: Path,
    problems: list[Problem],
    progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    """Store a dataset's images by content and write its manifest. Images whose size could not be read are skipped
    (the validation report inside the manifest names them); everything readable is kept, problems or not."""
    check_name(name)
    blobs = BlobStore(home.blobs)
    entries: dict[str, dict[str, object]] = {}
    duplicates: list[tuple[str, str]] = []
    new_blobs = 0
    for done, image in enumerate(dataset.images, start=1):
        if progress is not None:
            progress(done, len(dataset.images))
        source = source_root / image.path
        if image.width <= 0 or image.height <= 0 or not source.is_file():
            continue
        sha, stored, is_new = blobs.put(source)
        new_blobs += is_new
        if sha in entries:
            duplicates.append((str(entries[sha]["name"]), image.path))
            continue
        entries[sha] = {
            "sha256": sha,
            "file": stored.relative_to(home.root).as_posix(),
            "name": image.path,
            "width": image.width,
            "height": image.height,
            "instances": [
                {"class_id": inst.class_id, "is_box": inst.is_box, "polygon": inst.polygon.round(4).tolist()}
                for inst in image.instances
            ],
        }
    validation = {"trainable": not has_errors(problems), "problems": [p.as_json() for p in problems]}
    # The report is part of the version: the same files read with other problems are another version, so a
    # version's `trainable` never depends on which import came first.
    content = {
        "classes": list(dataset.classes),
        "images": sorted(entries.values(), key=lambda e: str(e["sha256"])),
        "validation": validation,
    }
    version = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]
    manifest = home.datasets / name / version / "manifest.json"
    if not manifest.exists():
        document = {"schema": MANIFEST_SCHEMA, "name": name, "version": version, "source_format": dataset.format}
        manifest.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(manifest, json.dumps({**document, **content}, indent=1))
    return ImportResult(name, version, manifest, len(entries), new_blobs, duplicates, not has_errors(problems))


def load_version(home: Home, name: str, version: str | None = None) -> tuple[Dataset, dict[str, object]]:
    """A stored version as a Dataset whose image paths are relative to the home; the newest when none is given."""
    folder = home.datasets / check_name(name)
    if version is None:
        versions = sorted(folder.glob("*/manifest.json"), key=lambda p: p.stat().st_mtime)
        if not versions:
            raise FileNotFoundError(f"no dataset named {name!r} in {home.root}")
        manifest = versions[-1]
    else:
        if not re.fullmatch(r"[0-9a-f]{12}", version):
            raise ValueError(f"invalid dataset version {version!r}: 12 hexadecimal digits")
        manifest = folder / version / "manifest.json"
    document = json.loads(manifest.read_text())
    images = [
        LabeledImage(
            path=str(entry["file"]),
            width=int(entry["width"]),
            height=int(entry["height"]),
            instances=[Instance(i["class_id"], i["polygon"], i["is_box"]) for i in entry["instances"]],
        )
        for entry in document["images"]
    ]
    return Dataset(list(document["classes"]), images, format="cardmetry"), document


def data_source(home: Home, reference: str, progress: Callable[[int, int], None] | None = None) -> DataSource:
    """What `cardmetry train --data` names: a dataset folder (validated in full, every image decoded) or a stored
    dataset NAME or NAME@VERSION. A dataset with errors can be inspected but not trained on: ValueError listing
    the first of them."""
    path = Path(reference)
    if path.exists():
        report = validate(path, progress=progress)
        errors = [p for p in report.problems if p.severity == "error"]
        if errors:
            shown = "; ".join(f"{p.file}{f':{p.line}' if p.line else ''}: {p.message}" for p in errors[:5])
            raise ValueError(f"{reference}: {len(errors)} error(s) to fix before training: {shown}")
        root = dataset_root(path)
        return DataSource(report.dataset, root, folder_version(report.dataset, root))
    name, _, version = reference.partition("@")
    try:
        dataset, document = load_version(home, name, version or None)
    except FileNotFoundError:
        raise ValueError(f"{reference}: neither a folder nor a dataset stored in {home.root}") from None
    validation = document.get("validation", {})
    if isinstance(validation, dict) and not validation.get("trainable", True):
        raise ValueError(f"{reference}: the stored version has validation errors (see `cardmetry dataset check`)")
    return DataSource(dataset, home.root, str(document["version"]))


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: str
    images: int
    trainable: bool
    problems: int
    source_format: str
    created: float  # the manifest's modification time (Unix seconds)


def list_datasets(home: Home) -> list[VersionInfo]:
    """Every stored dataset version, newest first; a manifest that cannot be read is left out."""
    found = []
    for manifest in home.datasets.glob("*/*/manifest.json"):
        try:
            document = json.loads(manifest.read_text(encoding="utf-8"))
            validation = document.get("validation") or {}
            found.append(VersionInfo(
                str(document["name"]), str(document["version"]), len(document["images"]),
                bool(validation.get("trainable", True)), len(validation.get("problems", [])),
                str(document.get("source_format", "")), manifest.stat().st_mtime,
            ))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a damaged manifest does not hide the others
    return sorted(found, key=lambda info: info.created, reverse=True)


def derive_version(
    home: Home,
    source: dict[str, Any],
    instances: list[list[Instance]],
    problems: list[dict[str, Any]],
    derived: dict[str, Any],
) -> ImportResult:
    """A new version of the dataset whose manifest is `source`: the same images (already stored, nothing is
    copied), each with the instances given for it (in the manifest's order), and the validation report given.
    `derived` says how it was made (stored as `derived_from`, beside the source version). Like import_dataset,
    the version id is the hash of the content, so deriving the same labels twice gives the same version."""
    name = check_name(str(source["name"]))
    entries = list(source["images"])
    if len(entries) != len(instances):
        raise ValueError(f"{len(instances)} sets of labels for the {len(entries)} images of {name}")
    images = [
        {**entry, "instances": [
            {"class_id": inst.class_id, "is_box": inst.is_box, "polygon": inst.polygon.round(4).tolist()}
            for inst in labels
        ]}
        for entry, labels in zip(entries, instances, strict=True)
    ]
    validation = {"trainable": not any(p.get("severity") == "error" for p in problems), "problems": problems}
    content = {
        "classes": list(source["classes"]),
        "images": sorted(images, key=lambda e: str(e["sha256"])),
        "validation": validation,
    }
    version = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]
    manifest = home.datasets / name / version / "manifest.json"
    if not manifest.exists():
        document = {"schema": MANIFEST_SCHEMA, "name": name, "version": version,
                    "source_format": source.get("source_format", ""),
                    "derived_from": {"version": source["version"], **derived}}
        manifest.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(manifest, json.dumps({**document, **content}, indent=1))
    return ImportResult(name, version, manifest, len(images), 0, [], bool(validation["trainable"]))


@dataclass(frozen=True)
class RefinedVersion:
    stored: ImportResult  # the new version (the source itself when nothing changed)
    source_version: str
    boxes: int  # box labels in the source version
    refined: int  # of them, turned into polygons
    refusals: list[dict[str, Any]]  # each box kept: image (its name in the dataset), class, reason
    unreadable: list[dict[str, Any]]  # images that could not be loaded: image, reason


def refine_version(
    home: Home, name: str, version: str, progress: Callable[[int, int], None] | None = None
) -> RefinedVersion:
    """Box-to-polygon refinement of a stored version (see cardmetry.data.refine), stored as a new version of
    the same dataset. A refused box stays a box and becomes a warning naming the image and the reason; the
    source's own problems are kept. FileNotFoundError for no such version, ValueError for one without boxes."""
    # Imported here: only refinement needs the edge-fitting code, and importing the store should not load it.
    from cardmetry.data.refine import refine_images, refusal_message

    dataset, document = load_version(home, name, version)
    entries: list[dict[str, Any]] = list(document["images"])
    boxes = sum(inst.is_box for image in dataset.images for inst in image.instances)
    if boxes == 0:
        raise ValueError(f"{name}/{version} has no box labels to refine: its labels are polygons already")
    shown = {image.path: str(entry["name"]) for image, entry in zip(dataset.images, entries, strict=True)}
    labels: list[list[Instance]] = []
    refusals: list[dict[str, Any]] = []
    unreadable: list[dict[str, Any]] = []
    problems = list((document.get("validation") or {}).get("problems", []))
    for refined in refine_images(dataset, home.root, progress=progress):
        image_name = shown[refined.image.path]  # the name it was uploaded under, not its blob's path
        labels.append(refined.image.instances)
        if refined.unreadable is not None:
            unreadable.append({"image": image_name, "reason": refined.unreadable})
            problems.append(Problem(image_name, refined.unreadable).as_json())
        for refusal in refined.refusals:
            refusals.append({"image": image_name, "class": dataset.class_name(refusal.instance.class_id),
                             "reason": refusal.reason})
            problems.append(Problem(image_name, refusal_message(dataset, refusal), severity="warning").as_json())
    unique = list({json.dumps(p, sort_keys=True): p for p in problems}.values())  # refining twice adds nothing
    unique.sort(key=lambda p: (str(p["file"]), int(p["line"] or 0)))
    stored = derive_version(home, document, labels, unique, {"refine": "box-to-polygon"})
    refined = boxes - sum(inst.is_box for image in labels for inst in image)
    return RefinedVersion(stored, version, boxes, refined, refusals, unreadable)
