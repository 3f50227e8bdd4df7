"""Which format a dataset is in, told from the files themselves, and where its root is."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from cardmetry.data.formats import yolo
from cardmetry.data.formats.common import load_json, walk_files
from cardmetry.data.images import is_image_name
from cardmetry.data.problems import Problem

JSON_FORMATS = ("coco", "labelstudio")


def json_kind(content: object) -> str | None:
    """Which JSON format parsed content is: coco (`images` and `annotations`), labelstudio (tasks with `data`)."""
    if isinstance(content, dict) and "images" in content and "annotations" in content:
        return "coco"
    if isinstance(content, list) and content and all(isinstance(t, dict) and "data" in t for t in content):
        return "labelstudio"
    return None


def dataset_root(path: str | Path) -> Path:
    """The folder image paths are relative to: the folder itself, or the folder holding the given file."""
    path = Path(path)
    return path if path.is_dir() else path.parent


def json_candidates(path: Path, root: Path, files: list[str]) -> list[str]:
    """The JSON files that may hold annotations: the file given, else those in the root and one level down."""
    if path.is_file():
        return [path.relative_to(root).as_posix()] if path.suffix.lower() == ".json" else []
    return [f for f in files if f.lower().endswith(".json") and len(PurePosixPath(f).parts) <= 2]


def classify_json(root: Path, candidates: list[str]) -> tuple[dict[str, list[str]], list[Problem]]:
    """Files by what they hold: "coco", "labelstudio", "other" (valid JSON of another shape) and "broken" (not
    JSON at all), with the problems that say why each broken one is."""
    kinds: dict[str, list[str]] = {kind: [] for kind in (*JSON_FORMATS, "other", "broken")}
    problems: list[Problem] = []
    for name in candidates:
        before = len(problems)
        content = load_json(root / name, name, problems)
        kind = "broken" if len(problems) > before else json_kind(content) or "other"
        kinds[kind].append(name)
    return kinds, problems


def detect_from(path: Path, root: Path, files: list[str]) -> str:
    """`detect_format` for a root whose files are already listed."""
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        return "yolo"
    if not path.is_file() and yolo.has_labels(files):
        return "yolo"
    kinds, problems = classify_json(root, json_candidates(path, root, files))
    found = [kind for kind in JSON_FORMATS if kinds[kind]]
    if found:
        return found[0]
    if problems:
        raise ValueError(f"{path}: cannot tell the format; {problems[0]}")
    if not path.is_file() and any(is_image_name(f) for f in files):
        return "yolo"  # images not labelled yet: reading them reports each one
    raise ValueError(f"{path}: no labels found (no COCO or Label Studio JSON, no YOLO label files, no images)")


def detect_format(path: str | Path) -> str:
    """The format of the dataset at `path` (a folder or an annotation file): yolo, coco or labelstudio.

    A folder holding more than one (the synthetic renderer writes YOLO labels and a COCO file for the same
    images) reads as the first of YOLO, COCO, Label Studio; pass a format to choose another. ValueError when
    nothing there is a dataset.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    root = dataset_root(path)
    return detect_from(path, root, walk_files(root) if path.is_dir() else [])
