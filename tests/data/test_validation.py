"""Validation: every problem at once, each naming the file, the line for label files, and what is wrong."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cardmetry.data.formats import from_coco, from_labelstudio, read_dataset
from cardmetry.data.images import ImageError, load_image, read_image_size
from cardmetry.data.validation import validate
from tests.data.format_helpers import (
    GOOD_BOX,
    GOOD_POLYGON,
    HEIGHT,
    WIDTH,
    coco_dataset,
    labelstudio_dataset,
    png_header_claiming,
    write_image,
    write_text,
    yolo_dataset,
)

REAL_SCANS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real-scans"


def with_label(text: str | bytes) -> Callable[[Path], object]:
    """A one-image YOLO dataset whose label file labels/a.txt holds `text`."""
    return lambda root: yolo_dataset(root, {"a": text})


def with_image_bytes(name: str, make: Callable[[bytes], bytes]) -> Callable[[Path], object]:
    """A good YOLO dataset whose image images/<name> is then replaced by make(its bytes)."""

    def build(root: Path) -> None:
        write_image(root / "images" / name)
        write_text(root / "labels" / f"{Path(name).stem}.txt", GOOD_BOX)
        path = root / "images" / name
        path.write_bytes(make(path.read_bytes()))

    return build


def flip_middle_byte(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


def duplicate_image(root: Path) -> None:
    yolo_dataset(root, {"a": GOOD_BOX, "b": GOOD_BOX})
    shutil.copyfile(root / "images" / "a.jpg", root / "images" / "b.jpg")


def label_without_image(root: Path) -> None:
    yolo_dataset(root, {"a": GOOD_BOX})
    write_text(root / "labels" / "ghost.txt", GOOD_BOX)


def image_without_label(root: Path) -> None:
    yolo_dataset(root, {"a": GOOD_BOX})
    write_image(root / "images" / "b.jpg", seed=9)


def non_image_in_images(root: Path) -> None:
    yolo_dataset(root, {"a": GOOD_BOX})
    write_text(root / "images" / "notes.md", "scanned on Tuesday")


def python_tag_in_yaml(root: Path) -> None:
    yolo_dataset(root, {"a": GOOD_BOX})
    write_text(root / "data.yaml", "names: !!python/object/apply:os.getcwd []\n")


def coco(**annotation: object) -> Callable[[Path], object]:
    """images/a.jpg (40 x 30) with one annotation of class outer made of these fields."""
    return lambda root: coco_dataset(root, [annotation])


def coco_declaring_another_size(root: Path) -> None:
    coco_dataset(root, [{"bbox": [1, 1, 5, 5]}])
    document = json.loads((root / "annotations.json").read_text())
    document["images"][0]["width"] = 80
    write_text(root / "annotations.json", json.dumps(document))


def coco_naming_a_missing_image(root: Path) -> None:
    coco_dataset(root, [{"bbox": [1, 1, 5, 5]}])
    document = json.loads((root / "annotations.json").read_text())
    document["images"][0]["file_name"] = "ghost.jpg"
    write_text(root / "annotations.json", json.dumps(document))


def broken_coco_json(root: Path) -> None:
    write_image(root / "images" / "a.jpg")
    write_text(root / "annotations.json", '{\n"images": [],\n"annotations": [}\n')


def studio(result: dict | None) -> Callable[[Path], object]:
    """images/a.jpg with one Label Studio task holding this result (no annotation at all when None)."""
    size = {"original_width": WIDTH, "original_height": HEIGHT}
    annotations = [] if result is None else [{"result": [{**size, **result}]}]
    return lambda root: labelstudio_dataset(root, [{"id": 1, "data": {"image": "a.jpg"}, "annotations": annotations}])


POLYGON_TOO_WIDE = {
    "type": "polygonlabels",
    "value": {"points": [[0, 0], [120, 0], [50, 50]], "polygonlabels": ["outer"]},
}
BOX_WITHOUT_WIDTH = {"type": "rectanglelabels", "value": {"x": 1, "y": 1, "height": 5, "rectanglelabels": ["outer"]}}

CASES = [
    # id, build, format, max_pixels, expected file, expected line, expected fragment, severity
    # A JPEG cut in half: the header reads, the pixels do not.
    ("truncated-jpeg", with_image_bytes("a.jpg", lambda d: d[: len(d) // 2]), None, None,
     "images/a.jpg", None, "truncated image", "error"),
    # An empty file with an image name.
    ("zero-byte", with_image_bytes("a.jpg", lambda d: b""), None, None,
     "images/a.jpg", None, "empty file (0 bytes)", "error"),
    # Text saved as .jpg.
    ("text-as-jpg", with_image_bytes("a.jpg", lambda d: b"not really a picture\n"), None, None,
     "images/a.jpg", None, "not a readable image", "error"),
    # A PNG whose pixel data fails its checksum.
    ("corrupt-png", with_image_bytes("a.png", flip_middle_byte), None, None,
     "images/a.png", None, "corrupt", "error"),
    # A 70-byte PNG announcing 100 000 x 100 000 pixels: refused before any decoding.
    ("decompression-bomb", with_image_bytes("a.png", lambda d: png_header_claiming(100_000, 100_000)), None, None,
     "images/a.png", None, "decompression-bomb guard", "error"),
    # A real image above a (tiny) pixel limit.
    ("above-pixel-limit", with_label(GOOD_BOX), None, 100,
     "images/a.jpg", None, "40 x 30 = 1,200 pixels, above the limit of 100", "error"),
    # The same bytes under two names: both named.
    ("duplicate-content", duplicate_image, None, None,
     "images/b.jpg", None, "same image content as 'images/a.jpg'", "error"),
    # A label file whose image is missing.
    ("label-without-image", label_without_image, None, None,
     "labels/ghost.txt", None, "label without image: no 'images/ghost'", "error"),
    # An image whose label file is missing.
    ("image-without-label", image_without_label, None, None,
     "images/b.jpg", None, "image without label: 'labels/b.txt' is missing", "error"),
    # Class 7 with two classes.
    ("unknown-class", with_label(f"{GOOD_BOX}\n7 0.5 0.5 0.1 0.1\n"), None, None,
     "labels/a.txt", 2, "class id 7 is not in the class list (outer, graphic)", "error"),
    # A box centre right of the image.
    ("box-outside", with_label("0 1.5 0.5 0.2 0.2"), None, None,
     "labels/a.txt", 1, "coordinates outside [0, 1]: cx=1.5", "error"),
    # A polygon point above the image.
    ("polygon-outside", with_label("1 0.1 -0.2 0.9 0.1 0.5 0.9"), None, None,
     "labels/a.txt", 1, "coordinates outside [0, 1]: y1=-0.2", "error"),
    # A box line missing a value.
    ("too-few-tokens", with_label("0 0.5 0.5 0.2"), None, None,
     "labels/a.txt", 1, "4 values; expected 5", "error"),
    # A word where a number belongs.
    ("non-numeric", with_label("0 0.5 abc 0.2 0.2"), None, None,
     "labels/a.txt", 1, "value 'abc' (token 3) is not a number", "error"),
    # A one-point polygon.
    ("polygon-one-point", with_label("1 0.5 0.5"), None, None,
     "labels/a.txt", 1, "polygon has 1 point; at least 3 are needed", "error"),
    # Three points on a line.
    ("polygon-zero-area", with_label("1 0.1 0.1 0.2 0.2 0.3 0.3"), None, None,
     "labels/a.txt", 1, "polygon has zero area", "error"),
    # A box of zero width.
    ("box-zero-area", with_label("0 0.5 0.5 0 0.2"), None, None,
     "labels/a.txt", 1, "box has zero area", "error"),
    # Latin-1 bytes in a label file.
    ("not-utf8", with_label(b"0 0.5 0.5 0.2 0.2\n0 0.5 \xe90.5 0.2 0.2\n"), None, None,
     "labels/a.txt", 2, "not UTF-8 text (byte 0xe9 at column 7)", "error"),
    # Notes kept among the images: reported, not fatal.
    ("non-image-in-images", non_image_in_images, None, None,
     "images/notes.md", None, "not an image file", "warning"),
    # A data.yaml asking to run Python: refused, never executed.
    ("yaml-python-tag", python_tag_in_yaml, None, None,
     "data.yaml", None, "cannot read YAML", "error"),
    # A COCO point a pixel right of the image (beyond the 0.5 px tolerance).
    ("coco-outside", coco(segmentation=[[1, 1, WIDTH + 1, 1, 20, 20]]), None, None,
     "annotations.json", None, "point (41, 1) outside the 40 x 30 image", "error"),
    # A COCO polygon of two points.
    ("coco-two-points", coco(segmentation=[[1, 1, 5, 5]]), None, None,
     "annotations.json", None, "annotation 1 (image 'a.jpg'): polygon has 2 points", "error"),
    # A COCO box of zero height.
    ("coco-zero-area-box", coco(bbox=[1, 1, 5, 0]), None, None,
     "annotations.json", None, "box has zero area", "error"),
    # A category the file does not define.
    ("coco-unknown-category", coco(category_id=9, bbox=[1, 1, 5, 5]), None, None,
     "annotations.json", None, "category_id 9 is not in the categories", "error"),
    # A coordinate that is a string.
    ("coco-non-numeric", coco(segmentation=[[1, 1, "x", 1, 20, 20]]), None, None,
     "annotations.json", None, "coordinate 'x' is not a finite number", "error"),
    # An RLE whose counts do not add up to the mask.
    ("coco-bad-rle", coco(segmentation={"size": [HEIGHT, WIDTH], "counts": [5, 5]}), None, None,
     "annotations.json", None, "RLE counts do not cover the 40 x 30 mask", "error"),
    # An image entry naming a file that is not there.
    ("coco-missing-image", coco_naming_a_missing_image, None, None,
     "annotations.json", None, "label without image: 'ghost.jpg' not found", "error"),
    # An image entry whose size is not the file's.
    ("coco-wrong-size", coco_declaring_another_size, None, None,
     "annotations.json", None, "declared 80 x 30 but the file is 40 x 30", "error"),
    # A syntax error on line 3, with the format named.
    ("coco-invalid-json", broken_coco_json, "coco", None,
     "annotations.json", 3, "invalid JSON", "error"),
    # A Label Studio polygon reaching 120 % of the width.
    ("studio-outside", studio(POLYGON_TOO_WIDE), None, None,
     "tasks.json", None, "task 1 (image 'a.jpg'), result 1: point (48, 0) outside", "error"),
    # A Label Studio rectangle without a width.
    ("studio-missing-width", studio(BOX_WITHOUT_WIDTH), None, None,
     "tasks.json", None, "width None is not a finite number", "error"),
    # A task nobody annotated.
    ("studio-unlabelled", studio(None), None, None,
     "tasks.json", None, "image without label: the task has no annotation", "error"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("build", "fmt", "max_pixels", "file", "line", "expected", "severity"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_each_problem_names_file_line_and_what_is_wrong(
    tmp_path: Path,
    build: Callable[[Path], object],
    fmt: str | None,
    max_pixels: int | None,
    file: str,
    line: int | None,
    expected: str,
    severity: str,
) -> None:
    build(tmp_path)
    report = validate(tmp_path, fmt, **({"max_pixels": max_pixels} if max_pixels else {}))
    matching = [p for p in report.problems if p.file == file and p.line == line and expected in p.message]
    assert matching, [str(p) for p in report.problems]
    assert matching[0].severity == severity
    assert str(matching[0]).startswith(f"{file}:{line}: " if line else f"{file}: ")
    assert report.trainable == (severity == "warning")


def test_a_point_within_half_a_pixel_of_the_image_is_fine(tmp_path: Path) -> None:
    coco_dataset(tmp_path, [{"segmentation": [[-0.5, 0, WIDTH + 0.5, 0, 20, HEIGHT + 0.5]]}])
    report = validate(tmp_path)
    assert report.problems == [] and report.trainable


def test_a_clean_dataset_and_its_json(tmp_path: Path) -> None:
    yolo_dataset(tmp_path, {"a": GOOD_BOX, "b": f"{GOOD_BOX}\n{GOOD_POLYGON}\n"})
    report = validate(tmp_path)
    assert report.problems == [] and report.trainable
    assert report.as_json() == {
        "format": "yolo",
        "classes": ["outer", "graphic"],
        "images": 2,
        "instances": 3,
        "trainable": True,
        "errors": 0,
        "warnings": 0,
        "problems": [],
    }


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    yolo_dataset(tmp_path, {"a": "7 0.5 0.5 0.1 0.1\n0 0.5 0.5\n", "b": GOOD_BOX, "c": b"\xff\n"})
    (tmp_path / "images" / "b.jpg").write_bytes((tmp_path / "images" / "b.jpg").read_bytes()[:200])
    write_text(tmp_path / "labels" / "ghost.txt", GOOD_BOX)
    report = validate(tmp_path)
    found = {(p.file, p.line) for p in report.problems}
    assert found == {("labels/a.txt", 1), ("labels/a.txt", 2), ("images/b.jpg", None), ("labels/c.txt", 1),
                     ("labels/ghost.txt", None)}  # fmt: skip
    assert report.as_json()["errors"] == 5


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    return {
        path.relative_to(root).as_posix(): (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_validation_changes_nothing(tmp_path: Path) -> None:
    for case in CASES:
        case[1](tmp_path / case[0])
    before = snapshot(tmp_path)
    for case in CASES:
        validate(tmp_path / case[0], case[2])
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------- loading images


def test_load_image_gives_rgb_of_the_stored_pixels(tmp_path: Path) -> None:
    grey = np.arange(12 * 20, dtype=np.uint16).reshape(12, 20) * 250  # 16-bit: scaled, not clipped at 255
    Image.fromarray(grey).save(tmp_path / "deep.png")
    loaded = load_image(tmp_path / "deep.png")
    assert loaded.shape == (12, 20, 3) and loaded.dtype == np.uint8
    assert loaded[-1, -1, 0] == round(int(grey[-1, -1]) * 255 / 65535)
    rgba = np.zeros((5, 7, 4), np.uint8)
    rgba[..., 0] = 200
    Image.fromarray(rgba).save(tmp_path / "alpha.png")
    assert load_image(tmp_path / "alpha.png")[0, 0].tolist() == [200, 0, 0]


def test_exif_orientation_is_not_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": labels still refer to the stored 30 x 20 grid
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "turned.jpg", exif=exif)
    assert read_image_size(tmp_path / "turned.jpg") == (30, 20)
    assert load_image(tmp_path / "turned.jpg").shape == (20, 30, 3)


@pytest.mark.parametrize(
    ("content", "max_pixels", "expected"),
    [
        (lambda data: data[: len(data) // 2], None, "truncated image"),  # half a JPEG
        (lambda data: b"", None, "empty file"),  # zero bytes
        (lambda data: png_header_claiming(50_000, 50_000), None, "decompression-bomb guard"),  # a bomb's header
        (lambda data: data, 10, "above the limit of 10"),  # a real image over a tiny limit
    ],
    ids=["truncated", "empty", "bomb", "limit"],
)
def test_load_image_errors_name_the_file(
    tmp_path: Path, content: Callable[[bytes], bytes], max_pixels: int | None, expected: str
) -> None:
    path = write_image(tmp_path / "card.jpg")
    path.write_bytes(content(path.read_bytes()))
    with pytest.raises(ImageError, match=re.escape(expected)) as raised:
        load_image(path, **({"max_pixels": max_pixels} if max_pixels else {}))
    assert str(raised.value).startswith(f"{path}: ")


# ---------------------------------------------------------------- arbitrary input never crashes

TOKENS = ["0", "1", "7", "-1", "0.5", "1.5", "-0.2", "1e-3", "nan", "inf", "1e999", "abc", "0x1", "١", "", "\t"]
label_lines = st.lists(st.sampled_from(TOKENS), max_size=12).map(" ".join)
label_texts = st.one_of(st.text(), st.lists(label_lines, max_size=6).map("\n".join))
label_inputs = st.one_of(label_texts, label_texts.map(lambda t: t.encode("utf-8")), st.binary(max_size=200))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(label_inputs)
def test_arbitrary_label_text_never_crashes_and_every_line_is_accounted_for(content: str | bytes) -> None:
    data = content if isinstance(content, bytes) else content.encode("utf-8")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        yolo_dataset(root, {"a": data})
        report = validate(root)
    assert {p.file for p in report.problems} <= {"labels/a.txt"}
    lines = data.split(b"\n")
    assert all(p.line is not None and 1 <= p.line <= len(lines) for p in report.problems)
    blank = {number for number, raw in enumerate(lines, 1) if is_blank(raw, number)}
    reported = {p.line for p in report.problems}
    drawn = len(report.dataset.images[0].instances)
    assert drawn + len(reported - blank) >= len(lines) - len(blank)  # each line: an instance or a problem


def is_blank(raw: bytes, number: int) -> bool:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not (text.removeprefix("\ufeff") if number == 1 else text).strip()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
ids = st.one_of(st.integers(-2, 3), st.text(max_size=2), json_values)
coco_like = st.fixed_dictionaries(
    {
        "images": st.lists(
            st.fixed_dictionaries({"id": ids, "file_name": json_values, "width": json_values, "height": json_values})
            | st.fixed_dictionaries({"id": ids, "file_name": st.just("a.jpg"), "width": st.integers(1, 50),
                                     "height": st.integers(1, 50)}),
            max_size=3,
        ),
        "annotations": st.lists(
            st.fixed_dictionaries(
                {
                    "id": ids,
                    "image_id": ids,
                    "category_id": ids,
                    "bbox": st.lists(st.floats() | st.integers(), max_size=5) | json_values,
                    "segmentation": st.one_of(
                        json_values,
                        st.lists(st.lists(st.floats(-10, 60) | st.integers(-10, 60), max_size=10), max_size=3),
                        st.fixed_dictionaries({"size": st.lists(st.integers(-1, 50), max_size=3),
                                               "counts": st.text(max_size=12) | st.lists(st.integers(-5, 900))}),
                    ),
                }
            ),
            max_size=4,
        ),
        "categories": st.lists(st.fixed_dictionaries({"id": ids, "name": json_values, "supercategory": json_values})),
    }
)  # fmt: skip
studio_like = st.lists(
    st.fixed_dictionaries(
        {
            "id": ids,
            "data": st.fixed_dictionaries({"image": st.just("a.jpg") | json_values}) | json_values,
            "annotations": st.lists(
                st.fixed_dictionaries(
                    {
                        "was_cancelled": st.booleans(),
                        "result": st.lists(
                            st.fixed_dictionaries(
                                {
                                    "type": st.sampled_from(["polygonlabels", "rectanglelabels", "choices"]),
                                    "original_width": st.integers(-1, 50) | json_values,
                                    "original_height": st.integers(-1, 50) | json_values,
                                    "value": st.fixed_dictionaries(
                                        {"x": json_values, "y": st.floats(), "width": st.integers(-5, 100),
                                         "height": st.floats(), "rotation": st.floats(),
                                         "points": st.lists(st.lists(st.floats(), max_size=3), max_size=5),
                                         "polygonlabels": st.lists(st.text(max_size=5), max_size=2),
                                         "rectanglelabels": st.lists(json_values, max_size=2)}
                                    ) | json_values,
                                }
                            ),
                            max_size=3,
                        ) | json_values,
                    }
                ),
                max_size=2,
            ),
        }
    ),
    max_size=3,
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(st.one_of(json_values, coco_like))
def test_arbitrary_coco_content_never_crashes(content: object) -> None:
    dataset, problems = from_coco(content, "annotations.json")
    assert all(p.file == "annotations.json" for p in problems)
    # Whatever is accepted is usable: a positive size, and outlines of three or more finite points.
    for image in dataset.images:
        assert image.width > 0 and image.height > 0
        assert all(len(i.polygon) >= 3 and np.isfinite(i.polygon).all() for i in image.instances)


@settings(max_examples=150, deadline=None)
@given(st.one_of(json_values, studio_like))
def test_arbitrary_labelstudio_content_never_crashes(content: object) -> None:
    _, problems = from_labelstudio(content, file="tasks.json")
    assert all(p.file == "tasks.json" for p in problems)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["coco", "labelstudio"]),
    st.binary(max_size=100) | json_values.map(lambda v: json.dumps(v).encode()),
)
def test_arbitrary_annotation_file_bytes_never_crash(fmt: str, content: bytes) -> None:
    name = "annotations.json" if fmt == "coco" else "tasks.json"
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_image(root / "images" / "a.jpg")
        write_text(root / name, content)
        report = validate(root, fmt)
    assert report.problems and not report.trainable
    assert {p.file for p in report.problems} <= {name, "images/a.jpg"}


# ---------------------------------------------------------------- the real scans


@pytest.mark.realscans
@pytest.mark.skipif(not REAL_SCANS.is_dir(), reason="real scans not present beside the repository")
def test_real_scans_read_as_47_cards_with_two_boxes_each_and_validate_clean() -> None:
    dataset, problems = read_dataset(REAL_SCANS)
    assert problems == []
    assert (dataset.format, dataset.classes, len(dataset.images)) == ("yolo", ["outer", "graphic"], 47)
    classes = Counter(instance.class_id for image in dataset.images for instance in image.instances)
    assert classes == {0: 47, 1: 47}
    assert all(instance.is_box for image in dataset.images for instance in image.instances)
    report = validate(REAL_SCANS)
    assert report.problems == [] and report.trainable
