"""What a run trains on: the validation split, box labels refined first, and each epoch's seeded plan."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from cardmetry.data.formats import read_dataset
from cardmetry.training.data import CardSegmentation, TrainData, epoch_plan, prepare_data
from cardmetry.training.sources import DataSource, folder_version
from tests.training.toy import tiny_config

REAL_SCANS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real-scans"


def test_validation_is_held_out_by_seed_without_overlap(tiny_cards) -> None:
    data = prepare_data(tiny_config(), tiny_cards)
    train, val = {s.path for s in data.train}, {s.path for s in data.val}
    assert train and val and not train & val and len(train | val) == 10
    again = prepare_data(tiny_config(), tiny_cards)
    assert {s.path for s in again.val} == val
    other = prepare_data(tiny_config(seed=1), tiny_cards)
    assert {s.path for s in other.val} != val or len(val) == 10


@pytest.mark.parametrize(
    ("role", "classes"),
    [
        ("outer", {0}),  # the card's edge only
        ("graphic", {1}),  # the printed frame only
        ("both", {0, 1}),  # one model, two classes
    ],
)
def test_samples_carry_only_the_roles_classes(tiny_cards, role: str, classes: set[int]) -> None:
    data = prepare_data(tiny_config(role=role), tiny_cards)
    assert {i.class_id for s in data.train for i in s.instances} == classes
    assert all({i.class_id for i in s.reference} == {0, 1} for s in data.train)  # both, for the border error


def make_data(real: int, synthetic: int) -> TrainData:
    sample = object()
    return TrainData([sample] * real, [sample], [sample] * synthetic)  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("real", "synthetic", "share", "expected_synthetic"),
    [
        (100, 300, 0.25, 0.25),  # mixed at the share asked for, whatever the sizes
        (100, 300, 0.0, 0.0),  # a share of 0 leaves synthetic out
        (100, 300, 1.0, 1.0),  # a share of 1 takes synthetic only
        (0, 300, 0.5, 1.0),  # synthetic only
        (100, 0, 0.5, 0.0),  # real only
    ],
)
def test_epoch_plans_mix_synthetic_at_the_share(real, synthetic, share, expected_synthetic) -> None:
    config = tiny_config(synthetic_share=share, epoch_size=4000)
    plan = epoch_plan(make_data(real, synthetic), config, epoch=0)
    drawn = np.mean([index >= real for index, _ in plan])
    assert drawn == pytest.approx(expected_synthetic, abs=0.03)
    assert plan == epoch_plan(make_data(real, synthetic), config, epoch=0)  # the same every time
    assert plan != epoch_plan(make_data(real, synthetic), config, epoch=1)  # and new each epoch


def test_an_epoch_without_a_set_size_shows_every_image_once(tiny_cards) -> None:
    data = prepare_data(tiny_config(), tiny_cards)
    plan = epoch_plan(data, tiny_config(), epoch=3)
    assert sorted(index for index, _ in plan) == list(range(len(data.train)))


def test_no_usable_outline_is_a_clear_error(tiny_cards, tmp_path: Path) -> None:
    root = tmp_path / "cards"
    shutil.copytree(tiny_cards.root, root)
    for label in (root / "labels").glob("*.txt"):
        label.write_text("\n".join(line for line in label.read_text().splitlines() if not line.startswith("1 ")))
    dataset, _ = read_dataset(root, "yolo")
    with pytest.raises(ValueError, match="no image has a usable graphic outline"):
        prepare_data(tiny_config(role="graphic"), DataSource(dataset, root, folder_version(dataset, root)))


def test_training_items_are_the_input_size_with_masks_on_the_card(tiny_cards) -> None:
    config = tiny_config(imgsz=96)
    data = prepare_data(config, tiny_cards)
    items = CardSegmentation(data.train, (0,), 96, config.augment)
    image, target = items[(0, 123)]
    assert image.shape == (3, 96, 96) and float(image.min()) >= 0 and float(image.max()) <= 1
    assert target.masks.shape[1:] == (96, 96) and target.labels.tolist() == [0]
    x0, y0, x1, y1 = target.boxes[0].tolist()
    assert 0 <= x0 < x1 <= 96 and 0 <= y0 < y1 <= 96
    again, _ = items[(0, 123)]
    assert (again == image).all()  # the same seed, the same augmentation


@pytest.mark.realscans
@pytest.mark.skipif(not REAL_SCANS.is_dir(), reason=f"{REAL_SCANS} is not there")
def test_real_box_labels_are_refined_to_quads_before_training(tmp_path: Path) -> None:
    root = tmp_path / "scans"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for name in ("Test001", "Test029"):
        (root / "images" / f"{name}.jpg").symlink_to(REAL_SCANS / "images" / f"{name}.jpg")
        shutil.copy(REAL_SCANS / "labels" / f"{name}.txt", root / "labels" / f"{name}.txt")
    dataset, _ = read_dataset(root, "yolo")
    assert all(i.is_box for image in dataset.images for i in image.instances)
    source = DataSource(dataset, root, folder_version(dataset, root))
    data = prepare_data(tiny_config(role="both", val_share=0.5), source)
    refined = [i for s in data.train + data.val for i in s.instances]
    assert not any(i.is_box for i in refined)
    # a box refinement refuses stays out of training, and the run's log says why
    refused = [p for p in data.problems if "not refined" in p.message]
    assert len(refined) + len(refused) == 4 and len(refined) >= 3
