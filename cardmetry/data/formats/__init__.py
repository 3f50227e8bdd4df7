"""Dataset formats: YOLO (boxes and polygons), COCO instance segmentation and Label Studio JSON.

Small pure functions convert one label (`from_yolo_line`, `as_yolo_line`) or one parsed file (`from_coco`,
`as_coco`, `from_labelstudio`, `as_labelstudio`); `read_dataset` and `write_dataset` work on folders. All
coordinates stay in the label convention of `cardmetry.data.instances` (pixel edge at 0), unshifted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from cardmetry.data.formats import coco, labelstudio, yolo
from cardmetry.data.formats.coco import as_coco, from_coco, mask_to_polygon
from cardmetry.data.formats.common import FORMATS, LabelError, check_writable, image_split, image_splits, walk_files
from cardmetry.data.formats.detect import classify_json, dataset_root, detect_format, detect_from, json_candidates
from cardmetry.data.formats.labelstudio import as_labelstudio, from_labelstudio
from cardmetry.data.formats.yolo import as_yolo_line, from_yolo_line, parse_yolo_line
from cardmetry.data.images import DEFAULT_MAX_PIXELS
from cardmetry.data.instances import Dataset
from cardmetry.data.problems import Problem

__all__ = [
    "FORMATS",
    "LabelError",
    "as_coco",
    "as_labelstudio",
    "as_yolo_line",
    "dataset_root",
    "detect_format",
    "from_coco",
    "from_labelstudio",
    "from_yolo_line",
    "image_split",
    "image_splits",
    "mask_to_polygon",
    "parse_yolo_line",
    "read_dataset",
    "write_dataset",
    "write_labels",
]


def read_dataset(
    path: str | Path, format: str | None = None, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[Dataset, list[Problem]]:
    """The dataset at `path` (a folder, or a COCO / Label Studio JSON file, or a YOLO data.yaml) and every
    problem met reading it, each naming a file relative to `dataset_root(path)`.

    Only image headers are read here (sizes, and the pixel limit); `validation.validate` decodes every image.
    Raises FileNotFoundError for a missing path and ValueError when the format cannot be told or is unknown.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if format is not None and format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    root = dataset_root(path)
    files = walk_files(root)
    chosen = format or detect_from(path, root, files)
    if chosen == "yolo":
        return yolo.read(root, max_pixels)
    kinds, _ = classify_json(root, json_candidates(path, root, files))
    # Files that are not JSON at all are read to report what is wrong with them; JSON of another shape (a
    # truth file, a config) only when nothing else could be the annotations the caller named.
    annotation_files = sorted(kinds[chosen] + kinds["broken"]) or kinds["other"]
    if not annotation_files:
        return Dataset([], [], chosen), [Problem(".", f"no {chosen} annotation file found")]
    reader = coco.read if chosen == "coco" else labelstudio.read
    return reader(root, annotation_files, files, max_pixels)


def write_dataset(
    dataset: Dataset,
    source_root: str | Path,
    out_dir: str | Path,
    format: str,
    splits: Mapping[str, str] | None = None,
) -> Dataset:
    """Write `dataset` (images found under `source_root`) to the empty or new folder `out_dir` in `format`.

    `splits` maps every image path to its split name (e.g. from `image_splits`); images then go to
    `images/<split>/`. Returns the dataset as written: same instances, image paths relative to `out_dir`.
    Raises ValueError for an unknown format or a dataset the format cannot hold (unknown class id, an image
    without a split), FileExistsError for an output folder that is not empty.
    """
    writers = {"yolo": yolo.write, "coco": coco.write, "labelstudio": labelstudio.write}
    if format not in writers:
        raise ValueError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    return writers[format](dataset, Path(source_root), Path(out_dir), splits)


def write_labels(dataset: Dataset, root: str | Path) -> None:
    """Label `dataset`'s images where they already are (paths relative to `root`): YOLO label files, a COCO
    `annotations.json` and `data.yaml`. Reading `root` back picks YOLO (see `detect_format`)."""
    root = Path(root)
    check_writable(dataset, None)
    yolo.write_label_files(dataset, root)
    (root / "annotations.json").write_text(json.dumps(as_coco(dataset)), encoding="utf-8")
    yolo.write_data_yaml(root, dataset.classes, None)
