"""Readers and writers: exact coordinates, layouts, class names, detection, and round trips between formats."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from cardmetry.data.formats import (
    LabelError,
    as_coco,
    as_labelstudio,
    as_yolo_line,
    detect_format,
    from_coco,
    from_labelstudio,
    from_yolo_line,
    image_splits,
    mask_to_polygon,
    read_dataset,
    write_dataset,
    write_labels,
)
from cardmetry.data.instances import DEFAULT_CLASSES, Dataset, Instance, LabeledImage
from cardmetry.geometry.lines import polygon_area
from tests.data.format_helpers import (
    GOOD_BOX,
    GOOD_POLYGON,
    HEIGHT,
    WIDTH,
    coco_dataset,
    images_on_disk,
    labelstudio_dataset,
    same_instances,
    write_image,
    write_text,
    yolo_dataset,
)

# ---------------------------------------------------------------- single labels, exact values


def test_yolo_box_line_is_pixels_with_the_edge_at_zero() -> None:
    instance = from_yolo_line("0 0.5 0.5 0.2 0.4", 100, 50)
    assert instance.is_box and instance.class_id == 0
    assert instance.bbox == pytest.approx((40.0, 15.0, 60.0, 35.0))
    assert as_yolo_line(instance, 100, 50) == "0 0.5 0.5 0.2 0.4"


def test_yolo_polygon_line_scales_each_axis_by_its_own_size() -> None:
    instance = from_yolo_line("1 0 0 1 0 1 1 0 1", 100, 50)
    assert not instance.is_box
    np.testing.assert_array_equal(instance.polygon, [[0, 0], [100, 0], [100, 50], [0, 50]])
    assert as_yolo_line(instance, 100, 50) == "1 0 0 1 0 1 1 0 1"


def test_yolo_writer_clips_to_the_image() -> None:
    instance = Instance(0, [[-2, 5], [30, -1], [30, 20]])
    assert as_yolo_line(instance, 20, 10) == "0 0 0.5 1 0 1 1"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("0 0.5 0.5 0.2", "4 values"),  # a box missing its height
        ("0", "1 value;"),  # a class alone
        ("0 0.5 0.5", "polygon has 1 point"),  # one point is not an outline
        ("a 0.5 0.5 0.2 0.2", "class id 'a' is not a whole number"),  # class must be an integer
        ("0 0.5 x 0.2 0.2", "value 'x' (token 3) is not a number"),  # coordinates must be numbers
        ("0 0.5 nan 0.2 0.2", "value 'nan' (token 3) is not a number"),  # nan/inf are not coordinates
        ("0 0.5 0.5 0.2 1e999", "too large"),  # overflows to infinity
    ],
)
def test_unreadable_yolo_lines(line: str, expected: str) -> None:
    with pytest.raises(LabelError, match=re.escape(expected)):
        from_yolo_line(line, 10, 10)


def test_yolo_class_written_as_float_is_accepted() -> None:
    assert from_yolo_line("1.0 0.5 0.5 0.2 0.2", 10, 10).class_id == 1


def test_coco_polygon_bbox_only_and_area() -> None:
    coco = {
        "images": [{"id": 7, "file_name": "a.jpg", "width": 40, "height": 30}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "segmentation": [[1, 2, 11, 2, 11, 22]], "bbox": [0, 0, 1, 1]},
            {"id": 2, "image_id": 7, "category_id": 2, "bbox": [3, 4, 10, 5]},
        ],
        "categories": [{"id": 1, "name": "outer"}, {"id": 2, "name": "graphic"}],
    }
    dataset, problems = from_coco(coco)
    assert problems == []
    polygon, box = dataset.images[0].instances
    np.testing.assert_array_equal(polygon.polygon, [[1, 2], [11, 2], [11, 22]])
    assert box.is_box and box.class_id == 1 and box.bbox == (3, 4, 13, 9)
    written = as_coco(dataset)
    assert written["categories"][0] == {"id": 1, "name": "outer", "supercategory": "outer"}
    first, second = written["annotations"]
    assert first["area"] == pytest.approx(100.0) and first["bbox"] == [1, 2, 10, 20] and first["iscrowd"] == 0
    assert second["segmentation"] == [] and second["area"] == pytest.approx(50.0)


def test_coco_keeps_the_largest_polygon_and_says_so() -> None:
    coco = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 2, 0, 2, 2], [0, 0, 20, 0, 20, 20]]}
        ],
        "categories": [{"id": 1, "name": "outer"}],
    }
    dataset, problems = from_coco(coco)
    assert dataset.images[0].instances[0].bbox == (0, 0, 20, 20)
    assert [p.severity for p in problems] == ["warning"] and "kept the largest" in problems[0].message


def test_roboflow_placeholder_category_does_not_shift_class_ids() -> None:
    coco = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 2, "bbox": [1, 1, 5, 5]}],
        "categories": [
            {"id": 0, "name": "cards", "supercategory": "none"},
            {"id": 1, "name": "outer", "supercategory": "cards"},
            {"id": 2, "name": "graphic", "supercategory": "cards"},
        ],
    }
    dataset, _ = from_coco(coco)
    assert dataset.classes == ["outer", "graphic"]
    assert dataset.images[0].instances[0].class_id == 1


def test_mask_outline_runs_along_pixel_edges() -> None:
    mask = np.zeros((10, 12), np.uint8)
    mask[2:5, 3:7] = 1  # rows 2..4, columns 3..6: the pixels cover x in [3, 7], y in [2, 5]
    polygon, regions = mask_to_polygon(mask)
    assert regions == 1
    assert Instance(0, polygon).bbox == (3, 2, 7, 5)
    assert polygon_area(polygon) == pytest.approx(12.0)


@pytest.mark.parametrize("compressed", [True, False], ids=["compressed", "uncompressed"])
def test_coco_rle_becomes_the_mask_outline(compressed: bool) -> None:
    mask = np.zeros((30, 40), np.uint8)
    mask[5:15, 10:30] = 1
    mask[25:27, 1:3] = 1  # a second, smaller region: dropped with a warning
    rle = mask_utils.encode(np.asfortranarray(mask))
    if compressed:
        segmentation = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
    else:
        flat = mask.ravel(order="F")
        changes = np.flatnonzero(np.diff(flat)) + 1
        runs = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
        segmentation = {"size": [30, 40], "counts": ([0] if flat[0] else []) + runs}
    coco = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": segmentation, "iscrowd": 0}],
        "categories": [{"id": 1, "name": "outer"}],
    }
    dataset, problems = from_coco(coco)
    instance = dataset.images[0].instances[0]
    assert instance.bbox == (10, 5, 30, 15) and polygon_area(instance.polygon) == pytest.approx(200.0)
    assert [p.severity for p in problems] == ["warning"]


def test_labelstudio_percent_and_rotation() -> None:
    common = {"original_width": 200, "original_height": 100}
    tasks = [
        {
            "id": 3,
            "data": {"image": "/data/upload/1/0a1b2c3d-a.jpg"},
            "annotations": [
                {
                    "result": [
                        {
                            **common,
                            "type": "rectanglelabels",
                            "value": {"x": 10, "y": 20, "width": 5, "height": 10, "rectanglelabels": ["outer"]},
                        },
                        {
                            **common,
                            "type": "rectanglelabels",
                            "value": {
                                "x": 50,
                                "y": 50,
                                "width": 10,
                                "height": 20,
                                "rotation": 90,
                                "rectanglelabels": ["graphic"],
                            },
                        },
                        {
                            **common,
                            "type": "polygonlabels",
                            "value": {"points": [[0, 0], [50, 0], [50, 100]], "polygonlabels": ["graphic"]},
                        },
                    ]
                }
            ],
        }
    ]
    dataset, problems = from_labelstudio(tasks)
    assert problems == []
    box, rotated, polygon = dataset.images[0].instances
    assert box.is_box and box.bbox == pytest.approx((20, 20, 30, 30))
    # 90 degrees clockwise about the top-left corner (100, 50): width runs down, height runs left.
    assert not rotated.is_box
    np.testing.assert_allclose(rotated.polygon, [[100, 50], [100, 70], [80, 70], [80, 50]], atol=1e-9)
    np.testing.assert_allclose(polygon.polygon, [[0, 0], [100, 0], [100, 100]])
    assert (polygon.class_id, dataset.classes) == (1, list(DEFAULT_CLASSES))


def test_labelstudio_unknown_label_is_added_and_reported() -> None:
    result = {
        "type": "polygonlabels",
        "original_width": 10,
        "original_height": 10,
        "value": {"points": [[0, 0], [50, 0], [50, 50]], "polygonlabels": ["sleeve"]},
    }
    dataset, problems = from_labelstudio([{"data": {"image": "a.jpg"}, "annotations": [{"result": [result]}]}])
    assert dataset.classes == ["outer", "graphic", "sleeve"]
    assert "'sleeve' is not a known class; added as class 2" in problems[0].message


# ---------------------------------------------------------------- folders: layouts, classes, detection


def test_yolo_split_folders_record_each_images_split(tmp_path: Path) -> None:
    for split, seed in (("train", 1), ("val", 2)):
        write_image(tmp_path / "images" / split / f"{split}.jpg", seed)
        write_text(tmp_path / "labels" / split / f"{split}.txt", GOOD_BOX + "\n")
    dataset, problems = read_dataset(tmp_path)
    assert problems == []
    assert image_splits(dataset) == {"images/train/train.jpg": "train", "images/val/val.jpg": "val"}


def test_roboflow_yolo_layout(tmp_path: Path) -> None:
    write_image(tmp_path / "valid" / "images" / "a.jpg")
    write_text(tmp_path / "valid" / "labels" / "a.txt", GOOD_POLYGON)
    write_text(tmp_path / "data.yaml", "names: ['outer', 'graphic']\nnc: 2\ntrain: ../train/images\n")
    write_text(tmp_path / "README.roboflow.txt", "exported")
    dataset, problems = read_dataset(tmp_path)
    assert problems == []
    assert image_splits(dataset) == {"valid/images/a.jpg": "valid"}


def test_flat_yolo_layout(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png")
    write_text(tmp_path / "a.txt", GOOD_BOX)
    write_text(tmp_path / "classes.txt", "outer\ngraphic\n")
    dataset, problems = read_dataset(tmp_path)
    assert problems == [] and [image.path for image in dataset.images] == ["a.png"]
    assert dataset.images[0].instances[0].bbox == pytest.approx((10, 7.5, 30, 22.5))


@pytest.mark.parametrize(
    ("config", "names"),
    [
        ({"names": ["card", "frame"]}, ["card", "frame"]),  # a list
        ({"names": {0: "card", 1: "frame"}}, ["card", "frame"]),  # an id -> name mapping
        ({"names": {"1": "frame", "0": "card"}}, ["card", "frame"]),  # string ids, any order
        ({"names": ["a"], "download": "https://example.invalid/x.zip"}, ["a"]),  # download is never acted on
    ],
)
def test_class_names_from_data_yaml(tmp_path: Path, config: dict, names: list[str]) -> None:
    yolo_dataset(tmp_path, {"a": GOOD_BOX})
    write_text(tmp_path / "data.yaml", yaml.safe_dump(config))
    dataset, _ = read_dataset(tmp_path)
    assert dataset.classes == names


def test_data_yaml_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    yolo_dataset(tmp_path, {"a": GOOD_BOX})
    write_text(tmp_path / "data.yaml", f"names: !!python/object/apply:os.system ['touch {marker}']\n")
    dataset, problems = read_dataset(tmp_path)
    assert not marker.exists()
    assert dataset.classes == list(DEFAULT_CLASSES)
    assert problems[0].file == "data.yaml" and "cannot read YAML" in problems[0].message


def test_detect_format_from_the_files(tmp_path: Path) -> None:
    assert detect_format(yolo_dataset(tmp_path / "yolo", {"a": GOOD_BOX})) == "yolo"
    assert detect_format(coco_dataset(tmp_path / "coco", [{"bbox": [1, 1, 5, 5]}])) == "coco"
    assert detect_format(tmp_path / "coco" / "annotations.json") == "coco"
    tasks = [{"data": {"image": "a.jpg"}, "annotations": []}]
    assert detect_format(labelstudio_dataset(tmp_path / "ls", tasks)) == "labelstudio"
    write_image(tmp_path / "unlabelled" / "images" / "a.jpg")
    assert detect_format(tmp_path / "unlabelled") == "yolo"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no labels found"):
        detect_format(tmp_path / "empty")
    write_text(tmp_path / "broken" / "annotations.json", '{"images": [')
    with pytest.raises(ValueError, match=re.escape("annotations.json:1: error: invalid JSON")):
        detect_format(tmp_path / "broken")
    with pytest.raises(FileNotFoundError):
        detect_format(tmp_path / "missing")


def test_coco_finds_images_by_name_and_split_files(tmp_path: Path) -> None:
    for split, seed in (("train", 1), ("valid", 2)):
        write_image(tmp_path / split / "card.jpg", seed)
        coco = {
            "images": [{"id": 1, "file_name": "card.jpg", "width": WIDTH, "height": HEIGHT}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}],
            "categories": [{"id": 1, "name": "outer"}],
        }
        write_text(tmp_path / split / "_annotations.coco.json", json.dumps(coco))
    dataset, problems = read_dataset(tmp_path)
    assert problems == []
    assert image_splits(dataset) == {"train/card.jpg": "train", "valid/card.jpg": "valid"}


def test_write_labels_beside_existing_images(tmp_path: Path) -> None:
    dataset = Dataset(
        list(DEFAULT_CLASSES), [LabeledImage("images/a.png", WIDTH, HEIGHT, [Instance(0, [[1, 1], [9, 1], [9, 9]])])]
    )
    images_on_disk(tmp_path, dataset)
    write_labels(dataset, tmp_path)
    assert {"data.yaml", "annotations.json", "labels"} <= {p.name for p in tmp_path.iterdir()}
    for fmt in ("yolo", "coco"):
        read, problems = read_dataset(tmp_path, fmt)
        assert problems == [] and same_instances(read.images[0], dataset.images[0], 1e-6)


# ---------------------------------------------------------------- writers


def test_yolo_writer_layout_yaml_and_copies(tmp_path: Path) -> None:
    source = yolo_dataset(tmp_path / "src", {"a": GOOD_BOX, "b": GOOD_POLYGON})
    dataset, _ = read_dataset(source)
    splits = {"images/a.jpg": "train", "images/b.jpg": "valid"}
    written = write_dataset(dataset, source, tmp_path / "out", "yolo", splits)
    out = tmp_path / "out"
    assert [image.path for image in written.images] == ["images/train/a.jpg", "images/valid/b.jpg"]
    assert (out / "labels" / "train" / "a.txt").read_text().split() == GOOD_BOX.split()
    assert len((out / "labels" / "valid" / "b.txt").read_text().split()) == 7  # a polygon line
    config = yaml.safe_load((out / "data.yaml").read_text())
    assert config["path"] == str(out.resolve()) and config["names"] == ["outer", "graphic"]
    assert (config["train"], config["val"]) == ("images/train", "images/valid")
    copied, original = out / "images" / "train" / "a.jpg", source / "images" / "a.jpg"
    assert copied.read_bytes() == original.read_bytes()
    assert not copied.samefile(original)  # a copy, never a link: editing the output must not touch the source
    with pytest.raises(FileExistsError, match="not empty"):
        write_dataset(dataset, source, out, "coco")


def test_writers_refuse_what_they_cannot_write(tmp_path: Path) -> None:
    source = yolo_dataset(tmp_path / "src", {"a": "5 0.5 0.5 0.2 0.2"})
    dataset, _ = read_dataset(source)
    with pytest.raises(ValueError, match="class id 5 is not in the class list"):
        write_dataset(dataset, source, tmp_path / "out", "coco")
    with pytest.raises(ValueError, match="no split given"):
        write_dataset(dataset, source, tmp_path / "out", "yolo", splits={})
    with pytest.raises(ValueError, match="not a plain folder name"):
        write_dataset(dataset, source, tmp_path / "out", "yolo", splits={"images/a.jpg": "../escape"})
    with pytest.raises(ValueError, match="unknown format"):
        write_dataset(dataset, source, tmp_path / "out", "voc")


def test_name_clashes_get_distinct_files(tmp_path: Path) -> None:
    write_image(tmp_path / "src" / "x" / "a.jpg", 1)
    write_text(tmp_path / "src" / "x" / "a.txt", GOOD_BOX)
    write_image(tmp_path / "src" / "y" / "a.png", 2)
    write_text(tmp_path / "src" / "y" / "a.txt", GOOD_POLYGON)
    dataset, problems = read_dataset(tmp_path / "src")
    assert problems == []
    written = write_dataset(dataset, tmp_path / "src", tmp_path / "out", "yolo")
    assert [image.path for image in written.images] == ["images/a.jpg", "images/a_2.png"]
    back, _ = read_dataset(tmp_path / "out")
    assert [len(image.instances[0].polygon) for image in back.images] == [4, 3]


# ---------------------------------------------------------------- round trips (hypothesis)


@st.composite
def instances(draw: st.DrawFn, width: int, height: int) -> Instance:
    class_id = draw(st.sampled_from([0, 1]))
    x = st.floats(0, width, allow_nan=False)
    y = st.floats(0, height, allow_nan=False)
    if draw(st.booleans()):
        x0, y0 = draw(st.floats(0, width - 0.5)), draw(st.floats(0, height - 0.5))
        x1, y1 = draw(st.floats(x0 + 0.5, width)), draw(st.floats(y0 + 0.5, height))
        return Instance.from_box(class_id, x0, y0, x1, y1)
    points = draw(st.lists(st.tuples(x, y), min_size=3, max_size=12).filter(lambda p: polygon_area(np.array(p)) > 0.05))
    return Instance(class_id, np.array(points))


@st.composite
def datasets(draw: st.DrawFn) -> Dataset:
    images = []
    for index in range(draw(st.integers(1, 3))):
        width, height = draw(st.integers(4, 120)), draw(st.integers(4, 120))
        labels = draw(st.lists(instances(width, height), max_size=4))
        images.append(LabeledImage(f"images/img{index}.png", width, height, labels))
    return Dataset(list(DEFAULT_CLASSES), images)


def assert_same(read: Dataset, original: Dataset, tolerance: float) -> None:
    by_name = {Path(image.path).name: image for image in read.images}
    assert sorted(by_name) == sorted(Path(image.path).name for image in original.images)
    for image in original.images:
        back = by_name[Path(image.path).name]
        if image.instances:  # Label Studio keeps the size in its results only
            assert (back.width, back.height) == (image.width, image.height)
        assert same_instances(back, image, tolerance), (back.instances, image.instances)


@given(datasets())
def test_in_memory_round_trips_keep_every_outline(dataset: Dataset) -> None:
    coco, coco_problems = from_coco(json.loads(json.dumps(as_coco(dataset))))
    studio, studio_problems = from_labelstudio(json.loads(json.dumps(as_labelstudio(dataset))))
    assert coco_problems == [] and studio_problems == []
    assert_same(coco, dataset, 1e-9)
    assert_same(studio, dataset, 1e-9)
    for image in dataset.images:
        for instance in image.instances:
            back = from_yolo_line(as_yolo_line(instance, image.width, image.height), image.width, image.height)
            assert same_instances(LabeledImage("", 0, 0, [back]), LabeledImage("", 0, 0, [instance]), 1e-5)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets())
def test_round_trips_through_files_keep_every_outline(dataset: Dataset) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        images_on_disk(root / "source", dataset)
        current, source = dataset, root / "source"
        for step, fmt in enumerate(["yolo", "coco", "labelstudio", "yolo"]):
            out = root / f"{step}-{fmt}"
            write_dataset(current, source, out, fmt)
            current, problems = read_dataset(out)
            assert current.format == fmt and problems == []
            assert_same(current, dataset, 1e-5)  # YOLO keeps 8 decimals of the normalised coordinates
            source = out
