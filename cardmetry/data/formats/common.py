"""What every format shares: walking a dataset folder, finding the image a label names, checks on outlines,
placing images in an output folder, and split names."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath

import numpy as np

from cardmetry.data.images import ImageError, is_image_name, read_image_size
from cardmetry.data.instances import Dataset, LabeledImage
from cardmetry.data.problems import Problem
from cardmetry.geometry.lines import polygon_area

FORMATS = ("yolo", "coco", "labelstudio")

# JSON formats store pixels (or percent of them) as floats that were often rounded or clipped by the tool that
# wrote them, so a point up to half a pixel outside the image is still "on the image": that is the rounding of a
# point on the border, not a labelling mistake.
OUTSIDE_TOLERANCE_PX = 0.5
# Below this an outline covers no pixels worth speaking of: exact zeros (collinear or repeated points) and the
# float dust left by normalising them.
ZERO_AREA_PX2 = 1e-6

_SPLIT_NAME = re.compile(r"^(train|val|valid|validation|test)\d*$", re.IGNORECASE)
_LABEL_STUDIO_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")
_FOLDER_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")  # a split becomes a folder: no "..", no "/"


class LabelError(ValueError):
    """A label that cannot be read at all; the message says what is wrong with it."""


def shown(value: object) -> str:
    """A value as an error message quotes it: its repr, cut to 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def finite_number(value: object, what: str) -> float:
    """A JSON number that is finite (bools, strings, NaN and huge integers are not), or LabelError naming it."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any float
            number = math.inf
        if math.isfinite(number):
            return number
    raise LabelError(f"{what} {shown(value)} is not a finite number")


def load_json(path: Path, name: str, problems: list[Problem]) -> object | None:
    """The parsed JSON file, or None with a problem naming the file (and the line of a syntax error)."""
    try:
        return json.loads(path.read_bytes().decode("utf-8-sig"))
    except OSError as error:
        problems.append(Problem(name, f"cannot read the file ({error.strerror or error})"))
    except UnicodeDecodeError as error:
        problems.append(Problem(name, f"not UTF-8 text (byte at offset {error.start})"))
    except json.JSONDecodeError as error:
        problems.append(Problem(name, f"invalid JSON: {error.msg} (column {error.colno})", error.lineno))
    except ValueError as error:  # e.g. an integer longer than Python will convert
        problems.append(Problem(name, f"invalid JSON: {error}"))
    except RecursionError:
        problems.append(Problem(name, "invalid JSON: nested too deeply"))
    return None


def read_classes_txt(root: Path, name: str, problems: list[Problem]) -> list[str] | None:
    """Class names, one a line, from `root/name`; None (with a problem) if unreadable."""
    try:
        text = (root / name).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        problems.append(Problem(name, f"cannot read class names ({error}); using the defaults"))
        return None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        problems.append(Problem(name, "no class names in the file; using the defaults", severity="warning"))
        return None
    return names


def walk_files(root: Path) -> list[str]:
    """Every file under `root` as a sorted posix path relative to it; hidden files and folders are skipped."""
    found: list[str] = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        relative = Path(folder).relative_to(root)
        found.extend((relative / name).as_posix() for name in files if not name.startswith("."))
    return sorted(found)


def image_split(image_path: str) -> str | None:
    """The split an image belongs to, read from its path, or None when the path names none.

    `images/<split>/x.jpg` (YOLO) and `<split>/images/x.jpg` (Roboflow) name it around an `images` folder;
    otherwise a folder called train/val/valid/validation/test (optionally numbered, e.g. train2017) does.
    """
    folders = PurePosixPath(image_path).parts[:-1]
    if "images" in folders:
        at = len(folders) - 1 - folders[::-1].index("images")
        if at + 1 < len(folders):
            return folders[at + 1]
        if at > 0:
            return folders[at - 1]
    return next((folder for folder in folders if _SPLIT_NAME.match(folder)), None)


def image_splits(dataset: Dataset) -> dict[str, str]:
    """Image path -> split name, for the images whose path names a split (see `image_split`)."""
    splits = {image.path: image_split(image.path) for image in dataset.images}
    return {path: split for path, split in splits.items() if split is not None}


def outline_problem(points: np.ndarray, zero_area: float = ZERO_AREA_PX2, kind: str = "polygon") -> str | None:
    """Why an outline (`kind`: polygon or box) cannot be drawn: too few points or no area; else None."""
    if len(points) < 3:
        return f"{kind} has {len(points)} point{'s' * (len(points) != 1)}; at least 3 are needed"
    if polygon_area(points) <= zero_area:
        return f"{kind} has zero area"
    return None


def outside_image_problem(points: np.ndarray, width: int, height: int) -> str | None:
    """A message naming the first point outside the image (beyond the tolerance), or None."""
    if width <= 0 or height <= 0:
        return None
    low, high = -OUTSIDE_TOLERANCE_PX, np.array([width, height]) + OUTSIDE_TOLERANCE_PX
    outside = np.flatnonzero(((points < low) | (points > high)).any(axis=1))
    if not len(outside):
        return None
    x, y = points[outside[0]]
    more = f" and {len(outside) - 1} more" if len(outside) > 1 else ""
    return f"point ({x:g}, {y:g}){more} outside the {width} x {height} image (tolerance {OUTSIDE_TOLERANCE_PX} px)"


class ImageFinder:
    """Finds the file an annotation names among a dataset folder's images.

    A name is tried as a path relative to the annotation file's folder, to the root, and to `images/` under
    either; then by its bare file name if exactly one image has it (COCO exports often keep only the name,
    Label Studio prefixes uploads with 8 hex digits). Absolute paths and `..` never reach outside the root.
    `found` collects every image some annotation named, readable or not.
    """

    def __init__(self, root: Path, files: Iterable[str]) -> None:
        self.root = root
        self.images = {path for path in files if is_image_name(path)}
        self.by_name: dict[str, list[str]] = defaultdict(list)
        for path in sorted(self.images):
            self.by_name[PurePosixPath(path).name].append(path)
        self.found: set[str] = set()

    def find(self, reference: str, near: str = "") -> str | None:
        found = self._find(reference, near)
        if found is not None:
            self.found.add(found)
        return found

    def _find(self, reference: str, near: str) -> str | None:
        reference = reference.replace("\\", "/")
        if "?d=" in reference:  # Label Studio local files: /data/local-files/?d=folder/x.jpg
            reference = reference.split("?d=", 1)[1]
        reference_path = PurePosixPath(reference.lstrip("/"))
        if reference_path.parts and ".." not in reference_path.parts:
            for base in (PurePosixPath(near), PurePosixPath(), PurePosixPath(near) / "images", PurePosixPath("images")):
                candidate = (base / reference_path).as_posix()
                if candidate in self.images:
                    return candidate
        name = reference_path.name
        for key in (name, _LABEL_STUDIO_UPLOAD_PREFIX.sub("", name)):
            matches = self.by_name.get(key, [])
            if len(matches) == 1:
                return matches[0]
        return None


def attach_image_files(
    images: list[LabeledImage],
    finder: ImageFinder,
    annotation_file: str,
    max_pixels: int,
    attached: dict[str, LabeledImage],
    problems: list[Problem],
) -> None:
    """Point each image of an annotation file at its file under the root and add it to `attached` (path ->
    image, shared by all annotation files of a dataset) if the file exists and its header can be read.

    The declared size stays (labels are in its pixels); a file of another size is an error. A missing size is
    taken from the header. A file listed twice is an error; its labels are merged so none are lost.
    """
    near = PurePosixPath(annotation_file).parent.as_posix()
    near = "" if near == "." else near
    for image in images:
        found = finder.find(image.path, near)
        if found is None:
            problems.append(Problem(annotation_file, f"label without image: '{image.path}' not found"))
            continue
        if found in attached:
            problems.append(Problem(annotation_file, f"'{found}' is listed more than once; labels merged"))
            attached[found].instances.extend(image.instances)
            continue
        try:
            width, height = read_image_size(finder.root / found, max_pixels)
        except ImageError as error:
            problems.append(Problem(found, error.problem))
            continue
        if image.width <= 0 or image.height <= 0:
            image.width, image.height = width, height
        elif (image.width, image.height) != (width, height):
            problems.append(
                Problem(
                    annotation_file,
                    f"'{found}' is declared {image.width} x {image.height} but the file is {width} x {height}",
                )
            )
        image.path = found
        attached[found] = image


def unlabelled_image_problems(finder: ImageFinder) -> list[Problem]:
    """Images no annotation file names, in the folders of the images they do name (in any folder when they
    name none: the annotation files are empty or name only missing files)."""
    folders = {PurePosixPath(path).parent for path in finder.found}
    return [
        Problem(path, "image without label: no annotation file names it")
        for path in sorted(finder.images - finder.found)
        if not folders or PurePosixPath(path).parent in folders
    ]


def check_writable(dataset: Dataset, splits: Mapping[str, str] | None) -> None:
    """ValueError naming the first image a writer could not write faithfully."""
    for image in dataset.images:
        if splits is not None and image.path not in splits:
            raise ValueError(f"{image.path}: no split given for this image")
        if splits is not None and not _FOLDER_NAME.fullmatch(splits[image.path]):
            raise ValueError(f"{image.path}: split {splits[image.path]!r} is not a plain folder name")
        if image.width <= 0 or image.height <= 0:
            raise ValueError(f"{image.path}: image size unknown ({image.width} x {image.height})")
        for instance in image.instances:
            if not 0 <= instance.class_id < len(dataset.classes):
                raise ValueError(
                    f"{image.path}: class id {instance.class_id} is not in the class list {dataset.classes}"
                )
            if len(instance.polygon) < 3:
                raise ValueError(f"{image.path}: a class {instance.class_id} polygon has fewer than 3 points")


def prepare_output(out_dir: Path, source_root: Path) -> None:
    """Create `out_dir`, refusing a folder that holds anything, or one inside the source (it would join it)."""
    if out_dir.resolve().is_relative_to(source_root.resolve()):
        raise ValueError(f"{out_dir}: the output folder is inside the source dataset {source_root}")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir}: the output folder is not empty")
    out_dir.mkdir(parents=True, exist_ok=True)


def place_images(
    dataset: Dataset, source_root: Path, out_dir: Path, splits: Mapping[str, str] | None
) -> list[LabeledImage]:
    """Put every image under `out_dir/images[/<split>]/` and return the images with their new paths.

    Images are copied, never hard-linked: a link would let an edit of the output change the source dataset.
    Names that would collide in one folder (x.jpg from two sources, or x.jpg and x.png whose labels would both
    be x.txt) get a numeric suffix.
    """
    used_stems: dict[str, set[str]] = defaultdict(set)
    placed: list[LabeledImage] = []
    for image in dataset.images:
        folder = "images" if splits is None else f"images/{splits[image.path]}"
        source = PurePosixPath(image.path)
        stem, suffix, number = source.stem, source.suffix, 1
        while stem.lower() in used_stems[folder]:
            number += 1
            stem = f"{source.stem}_{number}"
        used_stems[folder].add(stem.lower())
        target = f"{folder}/{stem}{suffix}"
        (out_dir / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source_root / image.path, out_dir / target)
        placed.append(LabeledImage(target, image.width, image.height, list(image.instances)))
    return placed
