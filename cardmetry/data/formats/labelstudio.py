"""Label Studio JSON export: a list of tasks `{"data": {"image": ...}, "annotations": [{"result": [...]}]}`.

Results of type `polygonlabels` (`value.points` in percent of the image) and `rectanglelabels` (`value.x`, `y`,
`width`, `height` in percent, `rotation` in degrees clockwise about the top-left corner) are read, using the
result's `original_width` / `original_height` as the pixel size (the image file's header when absent). A
rotated rectangle becomes a four-point polygon (it is no longer an axis-aligned box). Other result types are
reported and skipped. Of several annotations on one task (several annotators) the first not cancelled is used.

Label Studio keeps no class order: `classes.txt` beside the export gives it when present; otherwise the default
classes come first and other label names follow in order of appearance, each reported.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from cardmetry.data.formats.coco import MAX_SIDE
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
    read_classes_txt,
    shown,
    unlabelled_image_problems,
)
from cardmetry.data.images import ImageError, read_image_size
from cardmetry.data.instances import DEFAULT_CLASSES, Dataset, Instance, LabeledImage
from cardmetry.data.problems import Problem

SizeLookup = Callable[[str], tuple[int, int] | None]
_READ_TYPES = ("polygonlabels", "rectanglelabels")




def _image_reference(task: object) -> str:
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        raise LabelError("is not a task with a 'data' object")
    reference = task["data"].get("image")
    if not isinstance(reference, str) or not reference.strip():
        raise LabelError(f"data.image {shown(reference)} is not an image reference")
    return reference


def _chosen_results(task: dict) -> tuple[list | None, list[str]]:
    """The results of the first annotation not cancelled (None if there is none), and notes about the choice."""
    annotations = task.get("annotations", task.get("completions", []))
    if not isinstance(annotations, list):
        raise LabelError("annotations is not a list")
    usable = [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")]
    if not usable:
        return None, []
    results = usable[0].get("result", [])
    if not isinstance(results, list):
        raise LabelError("annotation result is not a list")
    extra = [f"{len(usable)} annotations; used the first"] if len(usable) > 1 else []
    return results, extra


def _pixel_size(results: list, reference: str, image_size: SizeLookup | None) -> tuple[int, int]:
    sizes = set()
    for result in results:
        if not isinstance(result, dict) or result.get("type") not in _READ_TYPES:
            continue
        width, height = result.get("original_width"), result.get("original_height")
        if width is None and height is None:
            continue
        for value, what in ((width, "original_width"), (height, "original_height")):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_SIDE:
                raise LabelError(f"{what} {shown(value)} is not a plausible image size")
        sizes.add((width, height))
    if len(sizes) > 1:
        raise LabelError(f"results disagree on the image size: {sorted(sizes)}")
    if sizes:
        return sizes.pop()
    found = image_size(reference) if image_size else None
    if found is None and any(isinstance(r, dict) and r.get("type") in _READ_TYPES for r in results):
        raise LabelError("no original_width / original_height and the image's size is unknown")
    return found or (0, 0)


def _label(value: dict, kind: str, classes: list[str], added: list[str]) -> int:
    names = value.get(kind)
    if not isinstance(names, list) or not names or not isinstance(names[0], str):
        raise LabelError(f"no label name in value.{kind}")
    if names[0] not in classes:
        classes.append(names[0])
        added.append(names[0])
    return classes.index(names[0])


def _result_outline(value: dict, kind: str, width: int, height: int) -> tuple[np.ndarray, bool]:
    scale = np.array([width, height], dtype=np.float64) / 100.0
    if kind == "polygonlabels":
        points = value.get("points")
        if not isinstance(points, list) or not all(isinstance(p, list) and len(p) == 2 for p in points):
            raise LabelError("value.points is not a list of [x, y] pairs")
        outline = np.array([[finite_number(x, "x"), finite_number(y, "y")] for x, y in points]).reshape(-1, 2)
        return outline * scale, False
    x, y, w, h = (finite_number(value.get(k), k) for k in ("x", "y", "width", "height"))
    if w < 0 or h < 0:
        raise LabelError(f"rectangle has a negative width or height ({w:g} x {h:g} %)")
    rotation = finite_number(value.get("rotation", 0), "rotation")
    (x, y), (w, h) = np.array([x, y]) * scale, np.array([w, h]) * scale
    if rotation % 360 == 0:
        return Instance.from_box(0, x, y, x + w, y + h).polygon, True
    angle = math.radians(rotation)
    along, across = np.array([math.cos(angle), math.sin(angle)]), np.array([-math.sin(angle), math.cos(angle)])
    corner = np.array([x, y])
    return np.array([corner, corner + w * along, corner + w * along + h * across, corner + h * across]), False


def from_labelstudio(
    tasks: object,
    classes: Sequence[str] | None = None,
    file: str = "tasks.json",
    image_size: SizeLookup | None = None,
) -> tuple[Dataset, list[Problem]]:
    """The dataset a parsed Label Studio export describes, with problems naming `file`, the task and result.

    `classes` is the class order (default: the default classes); label names not in it are appended.
    `image_size(reference)` answers for tasks whose results carry no original size. Image paths are the
    `data.image` references as written; `read` resolves them against a folder.
    """
    classes = list(classes if classes is not None else DEFAULT_CLASSES)
    if not isinstance(tasks, list):
        return Dataset(classes, [], "labelstudio"), [Problem(file, "not a Label Studio export: not a list of tasks")]
    problems: list[Problem] = []
    images = []
    for index, task in enumerate(tasks):
        where = f"task {shown(task['id'])}" if isinstance(task, dict) and "id" in task else f"tasks[{index}]"
        try:
            reference = _image_reference(task)
            where = f"{where} (image '{reference}')"
            results, notes = _chosen_results(task)
            width, height = _pixel_size(results or [], reference, image_size)
        except LabelError as error:
            problems.append(Problem(file, f"{where}: {error}"))
            continue
        problems.extend(Problem(file, f"{where}: {w}", severity="warning") for w in notes)
        if results is None:
            problems.append(Problem(file, f"{where}: image without label: the task has no annotation"))
        image = LabeledImage(reference, width, height)
        for number, result in enumerate(results or [], start=1):
            at = f"{where}, result {number}"
            added: list[str] = []
            try:
                if not isinstance(result, dict) or not isinstance(result.get("value"), dict):
                    raise LabelError("is not a result with a 'value' object")
                kind = result.get("type")
                if kind not in _READ_TYPES:
                    problems.append(
                        Problem(file, f"{at}: type {shown(kind)} is not read; skipped", severity="warning")
                    )
                    continue
                polygon, is_box = _result_outline(result["value"], kind, width, height)
                class_id = _label(result["value"], kind, classes, added)
            except LabelError as error:
                problems.append(Problem(file, f"{at}: {error}"))
                continue
            problems.extend(
                Problem(
                    file,
                    f"{at}: label {name!r} is not a known class; added as class {classes.index(name)}",
                    severity="warning",
                )
                for name in added
            )
            outside = outside_image_problem(polygon, width, height)
            if outside:
                problems.append(Problem(file, f"{at}: {outside}"))
            unusable = outline_problem(polygon, kind="box" if is_box else "polygon")
            if unusable:
                problems.append(Problem(file, f"{at}: {unusable}"))
                continue
            image.instances.append(Instance(class_id, polygon, is_box=is_box))
        images.append(image)
    return Dataset(classes, images, "labelstudio"), problems


def _percent_list(points: np.ndarray, width: int, height: int) -> list[list[float]]:
    return (np.asarray(points) / np.array([width, height]) * 100.0).tolist()


def as_labelstudio(dataset: Dataset) -> list[dict]:
    """A Label Studio task list: polygons as `polygonlabels` (from_name "label"), boxes as unrotated
    `rectanglelabels` (from_name "box"), `data.image` = the image path."""
    tasks = []
    for task_id, image in enumerate(dataset.images, start=1):
        results = []
        for number, instance in enumerate(image.instances, start=1):
            name = dataset.classes[instance.class_id]
            common = {
                "id": f"{task_id}-{number}",
                "to_name": "image",
                "original_width": image.width,
                "original_height": image.height,
                "image_rotation": 0,
            }
            if instance.is_box:
                x0, y0, x1, y1 = instance.bbox
                (x, y), (w, h) = _percent_list(np.array([[x0, y0], [x1 - x0, y1 - y0]]), image.width, image.height)
                value = {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [name]}
                results.append({**common, "from_name": "box", "type": "rectanglelabels", "value": value})
            else:
                points = _percent_list(instance.polygon, image.width, image.height)
                value = {"points": points, "closed": True, "polygonlabels": [name]}
                results.append({**common, "from_name": "label", "type": "polygonlabels", "value": value})
        tasks.append(
            {"id": task_id, "data": {"image": image.path}, "annotations": [{"id": task_id, "result": results}]}
        )
    return tasks


def read(root: Path, export_files: list[str], files: list[str], max_pixels: int) -> tuple[Dataset, list[Problem]]:
    """Read the exports (paths relative to `root`) and attach their images; see `from_labelstudio`."""
    problems: list[Problem] = []
    finder = ImageFinder(root, files)
    classes = read_classes_txt(root, "classes.txt", problems) if "classes.txt" in files else None
    attached: dict[str, LabeledImage] = {}
    for name in export_files:
        near = PurePosixPath(name).parent.as_posix()

        def header_size(reference: str, near: str = near) -> tuple[int, int] | None:
            found = finder.find(reference, "" if near == "." else near)
            try:
                return read_image_size(root / found, max_pixels) if found else None
            except ImageError:
                return None  # attach_image_files reports it

        content = load_json(root / name, name, problems)
        if content is None:
            continue
        part, part_problems = from_labelstudio(content, classes, name, header_size)
        classes = part.classes  # later exports extend it; earlier class ids stay valid
        problems.extend(part_problems)
        attach_image_files(part.images, finder, name, max_pixels, attached, problems)
    problems.extend(unlabelled_image_problems(finder))
    return Dataset(
        classes if classes is not None else list(DEFAULT_CLASSES), list(attached.values()), "labelstudio"
    ), problems


def write(dataset: Dataset, source_root: Path, out_dir: Path, splits: Mapping[str, str] | None) -> Dataset:
    """Images under `images[/<split>]/`, `tasks.json` (or `tasks_<split>.json`), and `classes.txt`."""
    check_writable(dataset, splits)
    prepare_output(out_dir, source_root)
    placed = place_images(dataset, source_root, out_dir, splits)
    written = Dataset(list(dataset.classes), placed, "labelstudio")
    groups: dict[str, list[LabeledImage]] = {"tasks.json": []} if splits is None else {}
    for original, image in zip(dataset.images, placed, strict=True):
        name = "tasks.json" if splits is None else f"tasks_{splits[original.path]}.json"
        groups.setdefault(name, []).append(image)
    for name, images in groups.items():
        tasks = as_labelstudio(Dataset(written.classes, images, "labelstudio"))
        (out_dir / name).write_text(json.dumps(tasks), encoding="utf-8")
    (out_dir / "classes.txt").write_text("".join(f"{c}\n" for c in dataset.classes), encoding="utf-8")
    return written
