"""Immutable, content-addressed dataset versions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cardmetry.data.instances import Dataset, Instance, LabeledImage
from cardmetry.data.problems import Problem
from cardmetry.store.datasets import check_name, import_dataset, list_datasets, load_version
from cardmetry.store.home import Home


def small_dataset(root: Path) -> Dataset:
    (root / "images").mkdir(parents=True)
    (root / "images" / "a.png").write_bytes(b"image one")
    (root / "images" / "b.png").write_bytes(b"image two")
    (root / "images" / "a_again.png").write_bytes(b"image one")
    box = Instance.from_box(0, 1, 2, 30, 40)
    return Dataset(
        ["outer", "graphic"],
        [LabeledImage(f"images/{n}.png", 32, 48, [box]) for n in ("a", "b", "a_again")],
        format="yolo",
    )


def test_importing_twice_stores_and_counts_each_image_once(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    dataset = small_dataset(tmp_path / "src")
    first = import_dataset(home, "cards", dataset, tmp_path / "src", [])
    second = import_dataset(home, "cards", dataset, tmp_path / "src", [])
    assert first.images == 2  # a.png and a_again.png hold the same bytes
    assert first.duplicates == [("images/a.png", "images/a_again.png")]
    assert (first.new_blobs, second.new_blobs) == (2, 0)
    assert first.version == second.version and first.manifest == second.manifest
    assert len([p for p in home.blobs.rglob("*") if p.is_file()]) == 2
    loaded, document = load_version(home, "cards")
    assert len(loaded.images) == 2 and document["validation"]["trainable"] is True
    assert all((home.root / image.path).is_file() for image in loaded.images)
    assert loaded.images[0].instances[0].is_box


def test_changed_labels_make_a_new_version_and_keep_the_old(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    dataset = small_dataset(tmp_path / "src")
    first = import_dataset(home, "cards", dataset, tmp_path / "src", [])
    dataset.images[1].instances.append(Instance(1, [[3, 3], [20, 3], [20, 30]]))
    second = import_dataset(home, "cards", dataset, tmp_path / "src", [])
    assert first.version != second.version
    assert json.loads(first.manifest.read_text())["version"] == first.version
    assert second.new_blobs == 0


def test_a_dataset_with_errors_is_kept_but_not_trainable(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    dataset = small_dataset(tmp_path / "src")
    problem = Problem("labels/b.txt", "class id 7 is not in the class list (outer, graphic)", line=1)
    result = import_dataset(home, "cards", dataset, tmp_path / "src", [problem])
    assert not result.trainable
    document = json.loads(result.manifest.read_text())
    assert document["validation"]["problems"][0]["file"] == "labels/b.txt"


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("real-scans_2026.v1", True),  # letters, digits, dot, dash, underscore
        ("../etc", False),  # a path must never become a folder name
        ("a/b", False),  # no separators
        ("", False),  # empty
        (".hidden", False),  # must start with a letter or digit
        ("x" * 65, False),  # too long
    ],
)
def test_dataset_names(name: str, ok: bool) -> None:
    if ok:
        assert check_name(name) == name
    else:
        with pytest.raises(ValueError, match="invalid dataset name"):
            check_name(name)


def test_load_version_checks_its_arguments(tmp_path: Path) -> None:
    home = Home(tmp_path)
    with pytest.raises(FileNotFoundError, match="no dataset named 'missing'"):
        load_version(home, "missing")
    with pytest.raises(ValueError, match="invalid dataset version"):
        load_version(home, "cards", "../../x")


def test_the_validation_report_is_part_of_the_version(tmp_path: Path) -> None:
    # The same files imported once with an error and once without are two versions, each with its own verdict.
    home = Home(tmp_path / "home")
    dataset = small_dataset(tmp_path / "src")
    problem = Problem("images/b.png", "truncated image")
    broken = import_dataset(home, "cards", dataset, tmp_path / "src", [problem])
    clean = import_dataset(home, "cards", dataset, tmp_path / "src", [])
    assert broken.version != clean.version
    assert json.loads(clean.manifest.read_text())["validation"]["trainable"] is True
    assert json.loads(broken.manifest.read_text())["validation"]["trainable"] is False


def test_list_datasets_names_every_version_and_skips_a_damaged_manifest(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    first = import_dataset(home, "cards", small_dataset(tmp_path / "src"), tmp_path / "src", [])
    broken = home.datasets / "cards" / "0123456789ab" / "manifest.json"
    broken.parent.mkdir(parents=True)
    broken.write_text("{not json")  # a half-written or damaged manifest
    listed = list_datasets(home)
    assert [(v.name, v.version, v.images, v.trainable) for v in listed] == [("cards", first.version, 2, True)]

