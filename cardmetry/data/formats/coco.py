"""COCO instance segmentation: `images`, `annotations` and `categories` in one JSON file (or one per split).

Reading: a polygon segmentation is used as it is (pixels, edge at 0); an RLE mask (compressed or not) becomes
the outline of its largest region; an annotation with only a `bbox` becomes a box instance. Class ids are the
positions of the categories sorted by id. Writing: box instances get an empty `segmentation` and their `bbox`,
so they read back as boxes; `area` is always the polygon's own (shoelace) area, never a rasterised mask's, so
it does not depend on how a tool would rasterise the outline.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from cardmetry.data.formats.common import (
    ImageFinder,
    LabelError,
    attach_image_files,
    check_writable,
    finite_number,
    load_json,
    outline_problem,
    outside_image_problem,
    place_images,
    prepare_output,
    shown,
    unlabelled_image_problems,
)
from cardmetry.data.images import DEFAULT_MAX_PIXELS
from cardmetry.data.instances import Dataset, Instance, LabeledImage
from cardmetry.data.problems import Problem
from cardmetry.geometry.lines import polygon_area

Key = int | str
MAX_SIDE = 2**31 - 1  # beyond any real image; keeps arithmetic on sizes in machine integers


def _is_key(value: object) -> bool:
    return isinstance(value, int | str) and not isinstance(value, bool)


def _key(value: object, what: str) -> Key:
    """An id as COCO files use them: an int (or, from some tools, a string)."""
    if _is_key(value):
        return value
    raise LabelError(f"{what} {shown(value)} is not an id")




def _size(value: object, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_SIDE:
        return value
    raise LabelError(f"{what} {shown(value)} is not a plausible image size")


def _categories(coco: dict, file: str, problems: list[Problem]) -> tuple[list[str], dict[Key, int]]:
    categories = coco.get("categories")
    if not isinstance(categories, list):
        problems.append(Problem(file, "no 'categories' list; every annotation's class is unknown"))
        return [], {}
    named: dict[Key, str] = {}
    for index, entry in enumerate(categories):
        try:
            if not isinstance(entry, dict):
                raise LabelError("is not an object")
            category_id = _key(entry.get("id"), "id")
            name = entry.get("name")
            if not isinstance(name, str):
                raise LabelError(f"name {shown(name)} is not a string")
        except LabelError as error:
            problems.append(Problem(file, f"categories[{index}]: {error}"))
            continue
        if category_id in named:
            problems.append(Problem(file, f"categories[{index}]: id {category_id!r} is used twice"))
            continue
        named[category_id] = name
    used = {a["category_id"] for a in coco["annotations"] if isinstance(a, dict) and _is_key(a.get("category_id"))}
    parents = {
        (entry["supercategory"], entry["id"])
        for entry in categories
        if isinstance(entry, dict) and isinstance(entry.get("supercategory"), str) and _is_key(entry.get("id"))
    }
    # Roboflow adds a placeholder category (usually id 0) that labels nothing and is every other category's
    # supercategory; kept, it would shift every class id by one.
    placeholders = {
        category_id
        for category_id, name in named.items()
        if category_id not in used and any(parent == name and other != category_id for parent, other in parents)
    }
    ordered = sorted((k for k in named if k not in placeholders), key=lambda k: (isinstance(k, str), k))
    return [named[k] for k in ordered], {k: i for i, k in enumerate(ordered)}


def _image(entry: object) -> tuple[Key, LabeledImage]:
    if not isinstance(entry, dict):
        raise LabelError("is not an object")
    image_id = _key(entry.get("id"), "id")
    file_name = entry.get("file_name")
    if not isinstance(file_name, str) or not file_name.strip():
        raise LabelError(f"file_name {shown(file_name)} is not a file name")
    if "width" not in entry and "height" not in entry:
        return image_id, LabeledImage(file_name, 0, 0)  # taken from the file's header when it is found
    return image_id, LabeledImage(file_name, _size(entry.get("width"), "width"), _size(entry.get("height"), "height"))


def _counts_from_string(counts: str) -> list[int]:
    """Decode COCO's compressed RLE string (the inverse of pycocotools' rleToString), refusing malformed text.

    pycocotools' own decoder reads past the end of a malformed string and accepts an empty one, returning
    uninitialised memory as a mask; checking here first keeps arbitrary files from reaching it.
    """
    values: list[int] = []
    position = 0
    while position < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(counts):
                raise LabelError("RLE counts string ends in the middle of a number")
            code = ord(counts[position]) - 48
            if not 0 <= code < 64:
                raise LabelError(f"RLE counts has an invalid character {counts[position]!r}")
            value |= (code & 0x1F) << (5 * shift)
            more = bool(code & 0x20)
            position += 1
            shift += 1
            if not more and code & 0x10:
                value |= -1 << (5 * shift)
        if len(values) > 2:
            value += values[-2]
        values.append(value)
    return values


def _rle_mask(segmentation: dict, image: LabeledImage) -> np.ndarray:
    size = segmentation.get("size")
    if not isinstance(size, list) or len(size) != 2:
        raise LabelError(f"RLE size {shown(size)} is not [height, width]")
    height, width = _size(size[0], "RLE height"), _size(size[1], "RLE width")
    if image.width > 0 and (width, height) != (image.width, image.height):
        raise LabelError(f"RLE size {width} x {height} differs from the image's {image.width} x {image.height}")
    if width * height > DEFAULT_MAX_PIXELS:
        raise LabelError(f"RLE size {width} x {height} is above the pixel limit")
    counts = segmentation.get("counts")
    if isinstance(counts, str):
        values = _counts_from_string(counts)
    elif isinstance(counts, list) and all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
        values = counts
    else:
        raise LabelError("RLE counts is neither a string nor a list of whole numbers")
    if any(v < 0 for v in values) or sum(values) != width * height:
        raise LabelError(f"RLE counts do not cover the {width} x {height} mask exactly")
    if isinstance(counts, str):
        rle = {"size": [height, width], "counts": counts.encode("ascii")}
    else:
        rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    with warnings.catch_warnings():
        # pycocotools 2.0.x asks numpy 2 for an array copy in a deprecated way; the mask is right either way.
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle)


def mask_to_polygon(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """The outline of a binary mask's largest region along pixel edges (label convention), and how many regions.

    Contours are traced on the lattice of pixel corners: a corner is inside when any of the four pixels that
    meet there is. Corner (x, y) sits exactly at label coordinate (x, y), so a mask of pixels 0..k-1 gives an
    outline from 0 to k, where tracing pixel centres would give 0.5 to k - 0.5 (half a pixel short per side).
    """
    padded = np.pad(mask.astype(bool), 1)
    corners = padded[:-1, :-1] | padded[:-1, 1:] | padded[1:, :-1] | padded[1:, 1:]
    contours, _ = cv2.findContours(corners.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return np.zeros((0, 2)), 0
    largest = max(contours, key=cv2.contourArea)
    return largest.reshape(-1, 2).astype(np.float64), len(contours)


def _outline(entry: dict, image: LabeledImage) -> tuple[np.ndarray, bool, list[str]]:
    """(pixels outline, is_box, warnings) of one annotation."""
    segmentation = entry.get("segmentation")
    if segmentation is None or segmentation == [] or segmentation == {}:
        bbox = entry.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise LabelError(f"no segmentation and bbox {shown(bbox)} is not [x, y, width, height]")
        x, y, w, h = (finite_number(v, "bbox value") for v in bbox)
        if w < 0 or h < 0:
            raise LabelError(f"bbox has a negative width or height ({w:g} x {h:g})")
        return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]]), True, []
    if isinstance(segmentation, dict):
        polygon, regions = mask_to_polygon(_rle_mask(segmentation, image))
        extra = [f"RLE mask has {regions} separate regions; kept the largest"] if regions > 1 else []
        return polygon, False, extra
    if not isinstance(segmentation, list):
        raise LabelError("segmentation is neither a list of polygons nor an RLE object")
    notes = []
    if all(not isinstance(part, list) for part in segmentation):
        notes.append("segmentation is a bare list of numbers, not a list of polygons; read as one polygon")
        segmentation = [segmentation]
    polygons = []
    for part in segmentation:
        if not isinstance(part, list):
            raise LabelError("segmentation mixes polygons and other values")
        if len(part) % 2:
            raise LabelError(f"polygon has an odd number of coordinates ({len(part)})")
        polygons.append(np.array([finite_number(v, "coordinate") for v in part], dtype=np.float64).reshape(-1, 2))
    if len(polygons) > 1:
        notes.append(f"{len(polygons)} polygons in one annotation; kept the largest")
    return max(polygons, key=polygon_area), False, notes


def from_coco(coco: object, file: str = "annotations.json") -> tuple[Dataset, list[Problem]]:
    """The dataset a parsed COCO file describes, with problems naming `file` and the annotation.

    Image paths are the `file_name`s as written; `read` resolves them against a folder.
    """
    if (
        not isinstance(coco, dict)
        or not isinstance(coco.get("images"), list)
        or not isinstance(coco.get("annotations"), list)
    ):
        return Dataset([], [], "coco"), [Problem(file, "not a COCO file: no 'images' and 'annotations' lists")]
    problems: list[Problem] = []
    classes, class_of = _categories(coco, file, problems)
    images: dict[Key, LabeledImage] = {}
    for index, entry in enumerate(coco["images"]):
        try:
            image_id, image = _image(entry)
        except LabelError as error:
            problems.append(Problem(file, f"images[{index}]: {error}"))
            continue
        if image_id in images:
            problems.append(Problem(file, f"images[{index}]: id {image_id!r} is used twice"))
            continue
        images[image_id] = image
    for index, entry in enumerate(coco["annotations"]):
        name = (
            f"annotation {shown(entry['id'])}"
            if isinstance(entry, dict) and "id" in entry
            else f"annotations[{index}]"
        )
        try:
            if not isinstance(entry, dict):
                raise LabelError("is not an object")
            image = images.get(_key(entry.get("image_id"), "image_id"))
            if image is None:
                raise LabelError(f"image_id {shown(entry.get('image_id'))} is not among the images")
            name = f"{name} (image '{image.path}')"
            category = _key(entry.get("category_id"), "category_id")
            if category not in class_of:
                raise LabelError(
                    f"category_id {shown(category)} is not in the categories (class id not in the class list)"
                )
            polygon, is_box, notes = _outline(entry, image)
        except LabelError as error:
            problems.append(Problem(file, f"{name}: {error}"))
            continue
        problems.extend(Problem(file, f"{name}: {note}", severity="warning") for note in notes)
        if entry.get("iscrowd") == 1:
            problems.append(Problem(file, f"{name}: iscrowd=1, read as an ordinary instance", severity="warning"))
        outside = outside_image_problem(polygon, image.width, image.height)
        if outside:
            problems.append(Problem(file, f"{name}: {outside}"))
        unusable = outline_problem(polygon, kind="box" if is_box else "polygon")
        if unusable:
            problems.append(Problem(file, f"{name}: {unusable}"))
            continue
        image.instances.append(Instance(class_of[category], polygon, is_box=is_box))
    return Dataset(classes, list(images.values()), "coco"), problems


def as_coco(dataset: Dataset) -> dict:
    """A COCO dict: image and annotation ids from 1, category id = class id + 1, `file_name` = image path."""
    images, annotations = [], []
    for image_id, image in enumerate(dataset.images, start=1):
        images.append({"id": image_id, "file_name": image.path, "width": image.width, "height": image.height})
        for instance in image.instances:
            x0, y0, x1, y1 = instance.bbox
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": instance.class_id + 1,
                    "segmentation": [] if instance.is_box else [instance.polygon.ravel().tolist()],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": polygon_area(instance.polygon),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i + 1, "name": name, "supercategory": name} for i, name in enumerate(dataset.classes)]
    return {"images": images, "annotations": annotations, "categories": categories}


def _merge_classes(part: Dataset, classes: list[str]) -> None:
    """Renumber `part`'s instances into `classes` (extended in place) by class name: files may order them apart."""
    mapping = {}
    for class_id, name in enumerate(part.classes):
        if name not in classes:
            classes.append(name)
        mapping[class_id] = classes.index(name)
    for image in part.images:
        image.instances = [Instance(mapping[i.class_id], i.polygon, is_box=i.is_box) for i in image.instances]


def read(root: Path, annotation_files: list[str], files: list[str], max_pixels: int) -> tuple[Dataset, list[Problem]]:
    """Read the COCO files (paths relative to `root`) and attach their images; see `from_coco`."""
    problems: list[Problem] = []
    finder = ImageFinder(root, files)
    classes: list[str] = []
    attached: dict[str, LabeledImage] = {}
    for name in annotation_files:
        content = load_json(root / name, name, problems)
        if content is None:
            continue
        part, part_problems = from_coco(content, name)
        problems.extend(part_problems)
        _merge_classes(part, classes)
        attach_image_files(part.images, finder, name, max_pixels, attached, problems)
    problems.extend(unlabelled_image_problems(finder))
    return Dataset(classes, list(attached.values()), "coco"), problems


def write(dataset: Dataset, source_root: Path, out_dir: Path, splits: Mapping[str, str] | None) -> Dataset:
    """Images under `images[/<split>]/` and `annotations.json` (or `annotations_<split>.json` per split)."""
    check_writable(dataset, splits)
    prepare_output(out_dir, source_root)
    placed = place_images(dataset, source_root, out_dir, splits)
    written = Dataset(list(dataset.classes), placed, "coco")
    if splits is None:
        groups = {"annotations.json": placed}
    else:
        groups = {}
        for original, image in zip(dataset.images, placed, strict=True):
            groups.setdefault(f"annotations_{splits[original.path]}.json", []).append(image)
    for name, images in groups.items():
        coco = as_coco(Dataset(written.classes, images, "coco"))
        (out_dir / name).write_text(json.dumps(coco), encoding="utf-8")
    return written
