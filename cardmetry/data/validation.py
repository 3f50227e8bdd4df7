"""Validation: every problem in a dataset at once, each naming the file (relative to the dataset root), the
1-based line for label files, and what is wrong.

On top of what reading reports (labels, class ids, coordinates, missing counterparts, image headers and the
pixel limit), every image is decoded completely and hashed: the same bytes under two names is an error,
because the content-addressed store would keep one image with two sets of labels (and a train/val split could
hold the same card twice). Validation only reads: it never modifies, moves or deletes anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cardmetry.data.formats import dataset_root, read_dataset
from cardmetry.data.hashing import sha256_of
from cardmetry.data.images import DEFAULT_MAX_PIXELS, check_image
from cardmetry.data.instances import Dataset
from cardmetry.data.problems import Problem, has_errors


@dataclass
class ValidationReport:
    dataset: Dataset
    problems: list[Problem]

    @property
    def trainable(self) -> bool:
        """A dataset with errors can be inspected but not trained on; warnings do not block."""
        return not has_errors(self.problems)

    def as_json(self) -> dict[str, object]:
        return {
            "format": self.dataset.format,
            "classes": list(self.dataset.classes),
            "images": len(self.dataset.images),
            "instances": sum(len(image.instances) for image in self.dataset.images),
            "trainable": self.trainable,
            "errors": sum(p.severity == "error" for p in self.problems),
            "warnings": sum(p.severity == "warning" for p in self.problems),
            "problems": [p.as_json() for p in self.problems],
        }


def _sha256(path: Path) -> str | None:
    try:
        return sha256_of(path)
    except OSError:
        return None  # check_image has reported why the file cannot be read


def duplicate_image_problems(root: Path, image_paths: list[str]) -> list[Problem]:
    """One error for each image whose bytes equal an earlier one's, naming both files."""
    first_with: dict[str, str] = {}
    problems = []
    for path in image_paths:
        digest = _sha256(root / path)
        if digest is None:
            continue
        if digest in first_with:
            problems.append(Problem(path, f"same image content as '{first_with[digest]}' (sha256 {digest[:12]}...)"))
        else:
            first_with[digest] = path
    return problems


def validate(
    path: str | Path,
    format: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: Callable[[int, int], None] | None = None,
) -> ValidationReport:
    """Check the dataset at `path` (a folder or an annotation file); see the module docstring.

    `progress(done, total)` is called after each image is decoded.

    Raises FileNotFoundError for a missing path and ValueError when the path holds no recognisable dataset
    (or more than one format: then pass `format`); everything wrong inside a dataset is a problem instead.
    """
    root = dataset_root(path)
    dataset, problems = read_dataset(path, format, max_pixels=max_pixels)
    for done, image in enumerate(dataset.images, start=1):
        problems.extend(check_image(root / image.path, max_pixels, name=image.path))
        if progress is not None:
            progress(done, len(dataset.images))
    problems.extend(duplicate_image_problems(root, sorted(image.path for image in dataset.images)))
    problems.sort(key=lambda p: (p.file, p.line or 0))
    return ValidationReport(dataset, problems)
