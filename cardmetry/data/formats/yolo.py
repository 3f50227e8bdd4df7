"""YOLO labels: one object per line, `cls cx cy w h` for a box or `cls x1 y1 x2 y2 ...` for a polygon, every
coordinate divided by the image's width or height (so in [0, 1], pixel edge at 0 as everywhere in labels).

Layouts read: `images/...` beside `labels/...` (split folders either under them, `images/train/x.jpg`, or above
them as Roboflow exports, `train/images/x.jpg`), and the flat one where `x.jpg` and `x.txt` sit side by side.
Class names come from `data.yaml` / `dataset.yaml` (read with yaml.safe_load and only `names` and `nc` used: its
paths and any `download:` are ignored, so reading never reaches outside the folder) or `classes.txt`;
otherwise the default classes.

Lines that cannot be drawn (bad tokens, fewer than 3 points, zero area) are reported and dropped; lines with an
unknown class or coordinates outside [0, 1] are reported and kept, so the dataset can still be inspected.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import yaml

from cardmetry.data.formats.common import (
    LabelError,
    check_writable,
    outline_problem,
    place_images,
    prepare_output,
    read_classes_txt,
    walk_files,
)
from cardmetry.data.images import IMAGE_SUFFIXES, ImageError, is_image_name, read_image_size
from cardmetry.data.instances import DEFAULT_CLASSES, Dataset, Instance, LabeledImage
from cardmetry.data.problems import Problem

YAML_NAMES = ("data.yaml", "data.yml", "dataset.yaml", "dataset.yml")
CLASSES_TXT_NAMES = ("classes.txt", "labels/classes.txt")
# Coordinates written with 6 decimals put a box edge (cx + w/2) up to 1e-6 past 1 by rounding alone; that is not
# a labelling mistake, so [0, 1] is checked with this much slack.
RANGE_TOLERANCE = 1e-6
# The zero-area threshold in normalised units: 1e-12 of the image, far below a thousandth of a pixel.
ZERO_AREA_NORMALISED = 1e-12
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_WHOLE_NUMBER = re.compile(r"[+-]?\d{1,18}", re.ASCII)
_NOT_LABEL_FILES = frozenset({"classes.txt", "readme.txt", "readme.roboflow.txt"})
_BOX_NAMES = ("cx", "cy", "w", "h")


@dataclass(frozen=True)
class YoloLine:
    """One parsed label line: class id and normalised values (cx cy w h for a box, x y pairs for a polygon)."""

    class_id: int
    values: tuple[float, ...]
    is_box: bool

    def outline(self) -> np.ndarray:
        """The normalised outline: a box's four corners or the polygon's points, (N, 2)."""
        if self.is_box:
            cx, cy, w, h = self.values
            x0, y0, x1, y1 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
            return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        return np.asarray(self.values, dtype=np.float64).reshape(-1, 2)

    def to_instance(self, width: int, height: int) -> Instance:
        pixels = self.outline() * np.array([width, height], dtype=np.float64)
        if self.is_box:
            (x0, y0), (x1, y1) = pixels[0], pixels[2]
            return Instance.from_box(self.class_id, x0, y0, x1, y1)
        return Instance(self.class_id, pixels)


def _shown(token: str) -> str:
    return repr(token if len(token) <= 24 else token[:24] + "...")


def _class_id(token: str) -> int:
    if _WHOLE_NUMBER.fullmatch(token):
        return int(token)
    if _NUMBER.fullmatch(token) and float(token).is_integer() and abs(float(token)) < 1e18:  # "0.0" from some tools
        return int(float(token))
    raise LabelError(f"class id {_shown(token)} is not a whole number")


def parse_yolo_line(text: str) -> YoloLine:
    """Parse one non-blank label line. LabelError says what is wrong: token count, a non-number, too few points."""
    tokens = text.split()
    count = len(tokens)
    if count != 5 and (count < 3 or count % 2 == 0):
        raise LabelError(
            f"{count} value{'s' * (count != 1)}; expected 5 (class and box) or an odd number "
            "(class and x y pairs of a polygon)"
        )
    class_id = _class_id(tokens[0])
    values = []
    for position, token in enumerate(tokens[1:], start=2):
        if not _NUMBER.fullmatch(token):
            raise LabelError(f"value {_shown(token)} (token {position}) is not a number")
        values.append(float(token))
    if not all(np.isfinite(values)):  # e.g. 1e999
        raise LabelError("a value is too large to be a coordinate")
    if count != 5 and count < 7:
        raise LabelError(f"polygon has {(count - 1) // 2} point; at least 3 are needed")
    return YoloLine(class_id, tuple(values), is_box=count == 5)


def yolo_line_problems(line: YoloLine, classes: list[str]) -> list[str]:
    """What is wrong with a parsed line that still lets it be drawn: unknown class, coordinates outside [0, 1]."""
    problems = []
    if not 0 <= line.class_id < len(classes):
        problems.append(f"class id {line.class_id} is not in the class list ({', '.join(classes)})")
    if line.is_box:
        named = dict(zip(_BOX_NAMES, line.values, strict=True))
        corners = line.outline()
        named |= {"left": corners[0, 0], "top": corners[0, 1], "right": corners[2, 0], "bottom": corners[2, 1]}
    else:
        named = {f"{'xy'[i % 2]}{i // 2 + 1}": value for i, value in enumerate(line.values)}
    low, high = -RANGE_TOLERANCE, 1 + RANGE_TOLERANCE
    outside = [f"{name}={value:g}" for name, value in named.items() if not low <= value <= high]
    if outside:
        problems.append(f"coordinates outside [0, 1]: {', '.join(outside)}")
    return problems


def from_yolo_line(line: str, width: int, height: int) -> Instance:
    """The instance a label line describes, in pixels of a `width` x `height` image. LabelError if unreadable."""
    return parse_yolo_line(line).to_instance(width, height)


def _number(value: float) -> str:
    return f"{value:.8f}".rstrip("0").rstrip(".")


def as_yolo_line(instance: Instance, width: int, height: int) -> str:
    """A label line for the instance: a detection line for a box, a segmentation line otherwise.

    Coordinates are clipped to [0, 1] (YOLO has no way to say "just outside") and written with 8 decimals,
    about 1e-4 px on a 10 000 px image.
    """
    size = np.array([width, height], dtype=np.float64)
    if instance.is_box:
        x0, y0, x1, y1 = instance.bbox
        (x0, y0), (x1, y1) = np.clip([[x0, y0], [x1, y1]], 0, size) / size
        values = [(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0]
    else:
        values = np.clip(instance.polygon / size, 0.0, 1.0).ravel().tolist()
    return " ".join([str(instance.class_id), *map(_number, values)])


def label_path(image_path: str) -> str:
    """Where an image's label file is: the last `images` folder becomes `labels` (if any), suffix `.txt`."""
    parts = list(PurePosixPath(image_path).parts)
    folders = parts[:-1]
    if "images" in folders:
        parts[len(folders) - 1 - folders[::-1].index("images")] = "labels"
    return PurePosixPath(*parts).with_suffix(".txt").as_posix()


def _image_folder_of_label(label: str) -> str:
    parts = list(PurePosixPath(label).parts[:-1])
    if "labels" in parts:
        parts[len(parts) - 1 - parts[::-1].index("labels")] = "images"
    return PurePosixPath(*parts).as_posix() if parts else ""


def read_class_names(root: Path, files: set[str], problems: list[Problem]) -> list[str]:
    """Class names from data.yaml / dataset.yaml, else classes.txt, else the defaults."""
    for name in YAML_NAMES:
        if name in files:
            names = _names_from_yaml(root / name, name, problems)
            return names if names is not None else list(DEFAULT_CLASSES)
    for name in CLASSES_TXT_NAMES:
        if name in files:
            names = read_classes_txt(root, name, problems)
            return names if names is not None else list(DEFAULT_CLASSES)
    return list(DEFAULT_CLASSES)


def _names_from_yaml(path: Path, name: str, problems: list[Problem]) -> list[str] | None:
    try:
        content = yaml.safe_load(path.read_bytes())
    # RecursionError: absurdly nested YAML; every other failure is a YAMLError (ReaderError for bad bytes).
    except (OSError, yaml.YAMLError, RecursionError) as error:
        problems.append(Problem(name, f"cannot read YAML ({error}); using the default class names"))
        return None
    names = content.get("names") if isinstance(content, dict) else None
    if isinstance(names, dict) and names and all(re.fullmatch(r"\d{1,5}", str(k), re.ASCII) for k in names):
        by_id = {int(str(k)): v for k, v in names.items()}
        names = [by_id.get(i, f"class{i}") for i in range(max(by_id) + 1)]
        if len(by_id) != len(names):
            problems.append(Problem(name, "names skips class ids; the gaps are named class<N>", severity="warning"))
    # Only scalars: printing an arbitrary YAML structure (aliases nest cheaply) could take forever.
    if not isinstance(names, list) or not names or not all(isinstance(n, str | int | float) for n in names):
        problems.append(Problem(name, "no 'names' list or id -> name mapping; using the default class names"))
        return None
    result = [str(n) for n in names]
    declared = content.get("nc")
    if isinstance(declared, int) and declared != len(result):
        problems.append(Problem(name, f"nc is {declared} but names has {len(result)}", severity="warning"))
    return result


def read_label_file(root: Path, label: str, classes: list[str], problems: list[Problem]) -> list[YoloLine]:
    """The drawable lines of one label file; every problem goes to `problems` with its 1-based line."""
    try:
        data = (root / label).read_bytes()
    except OSError as error:
        problems.append(Problem(label, f"cannot read the label file ({error.strerror or error})"))
        return []
    lines = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            byte = raw[error.start]
            problems.append(Problem(label, f"not UTF-8 text (byte 0x{byte:02x} at column {error.start + 1})", number))
            continue
        text = text.removeprefix("\ufeff") if number == 1 else text
        if not text.strip():
            continue
        try:
            line = parse_yolo_line(text)
        except LabelError as error:
            problems.append(Problem(label, str(error), number))
            continue
        problems.extend(Problem(label, message, number) for message in yolo_line_problems(line, classes))
        unusable = outline_problem(line.outline(), ZERO_AREA_NORMALISED, "box" if line.is_box else "polygon")
        if unusable:
            problems.append(Problem(label, unusable, number))
        else:
            lines.append(line)
    return lines


def read(root: Path, max_pixels: int) -> tuple[Dataset, list[Problem]]:
    """Every image under `root` with its label file's objects, and every problem met on the way."""
    files = walk_files(root)
    file_set = set(files)
    problems: list[Problem] = []
    classes = read_class_names(root, file_set, problems)
    image_files = [path for path in files if is_image_name(path)]
    label_of = {image: label_path(image) for image in image_files}
    flat_folders = _flat_folders(image_files)
    claimed = set(label_of.values())
    for path in files:
        folders = PurePosixPath(path).parts[:-1]
        if path in claimed or is_image_name(path):
            continue
        if "images" in folders:
            problems.append(Problem(path, "not an image file (unknown suffix); ignored", severity="warning"))
        elif path.endswith(".txt") and _is_label_file(path, flat_folders):
            expected = (PurePosixPath(_image_folder_of_label(path)) / PurePosixPath(path).stem).as_posix()
            problems.append(Problem(path, f"label without image: no '{expected}' with a suffix of {_suffix_list()}"))
    parsed = {label: read_label_file(root, label, classes, problems) for label in sorted(claimed & file_set)}
    images = []
    for image in image_files:
        try:
            width, height = read_image_size(root / image, max_pixels)
        except ImageError as error:
            problems.append(Problem(image, error.problem))
            continue
        label = label_of[image]
        if label not in file_set:
            problems.append(Problem(image, f"image without label: '{label}' is missing"))
        instances = [line.to_instance(width, height) for line in parsed.get(label, [])]
        images.append(LabeledImage(image, width, height, instances))
    return Dataset(classes, images, "yolo"), problems


def _flat_folders(image_files: list[str]) -> set[PurePosixPath]:
    """Folders of images outside any `images` folder: their labels sit beside them."""
    return {PurePosixPath(image).parent for image in image_files if "images" not in PurePosixPath(image).parts[:-1]}


def _is_label_file(path: str, flat_folders: set[PurePosixPath]) -> bool:
    posix = PurePosixPath(path)
    if posix.name.lower() in _NOT_LABEL_FILES or posix.name.lower().startswith("readme"):
        return False
    return "labels" in posix.parts[:-1] or posix.parent in flat_folders


def _suffix_list() -> str:
    return "/".join(sorted(IMAGE_SUFFIXES))


def has_labels(files: list[str]) -> bool:
    """Whether the folder holds YOLO label files (used by format detection)."""
    flat_folders = _flat_folders([path for path in files if is_image_name(path)])
    return any(path.endswith(".txt") and _is_label_file(path, flat_folders) for path in files)


def write_label_files(dataset: Dataset, root: Path) -> None:
    """A label file for every image of `dataset`, where `label_path` puts it under `root`."""
    for image in dataset.images:
        target = root / label_path(image.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        lines = [as_yolo_line(instance, image.width, image.height) for instance in image.instances]
        target.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def write_data_yaml(root: Path, classes: list[str], splits: Mapping[str, str] | None) -> None:
    """data.yaml as Ultralytics reads it: absolute `path`, image folders per split (val = valid = validation)."""
    config: dict[str, object] = {"path": str(root.resolve())}
    if splits is None:
        config |= {"train": "images", "val": "images"}
    else:
        for split in sorted(set(splits.values())):
            key = "val" if split.lower() in ("val", "valid", "validation") else split
            config[key] = f"images/{split}"
    config |= {"nc": len(classes), "names": list(classes)}
    (root / "data.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


def write(dataset: Dataset, source_root: Path, out_dir: Path, splits: Mapping[str, str] | None) -> Dataset:
    """Images under `images[/<split>]/`, labels under `labels[/<split>]/`, and a data.yaml naming both."""
    check_writable(dataset, splits)
    prepare_output(out_dir, source_root)
    written = Dataset(list(dataset.classes), place_images(dataset, source_root, out_dir, splits), "yolo")
    write_label_files(written, out_dir)
    write_data_yaml(out_dir, written.classes, splits)
    return written
