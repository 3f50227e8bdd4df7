"""Refining a whole dataset: boxes become quads on the edges, refusals keep the box and say why."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from cardmetry.cli import app
from cardmetry.data.formats import read_dataset, write_dataset
from cardmetry.data.instances import Dataset, Instance, LabeledImage, cv_to_label
from cardmetry.data.refine import refine_dataset
from cardmetry.data.synth import render
from cardmetry.data.synth.dataset import SynthOptions, scene_for
from cardmetry.data.synth.scene import Scene
from cardmetry.geometry.lines import order_quad

LOOSE_MM = 0.4
OPTIONS = SynthOptions(count=3, seed=8, dpi=300, max_rotation_deg=0.5)  # nearly square on the glass, as scanned


def boxed_dataset(root: Path, scenes: list[Scene]) -> tuple[Path, dict[str, dict[str, np.ndarray]]]:
    """Render the scenes and label each only with boxes 0.4 mm too loose, plus a blank image labelled as if it
    held a card. Returns the YOLO dataset's folder and each image's true quads (label convention)."""
    images, truths = [], {}
    (root / "src").mkdir(parents=True)
    for index, scene in enumerate(scenes):
        rendered = render(scene)
        name = f"card{index}{rendered.extension}"
        (root / "src" / name).write_bytes(rendered.encoded)
        loose = LOOSE_MM * rendered.truth.px_per_mm
        quads = {
            "outer": cv_to_label(rendered.truth.outer_quad_px),
            "graphic": cv_to_label(rendered.truth.graphic_quad_px),
        }
        boxes = [
            Instance.from_box(class_id, *(quad.min(axis=0) - loose), *(quad.max(axis=0) + loose))
            for class_id, quad in enumerate(quads.values())
        ]
        images.append(LabeledImage(name, rendered.placement.width, rendered.placement.height, boxes))
        truths[name] = quads
    cv2.imwrite(str(root / "src" / "blank.png"), np.full((900, 700, 3), 128, np.uint8))
    images.append(LabeledImage("blank.png", 700, 900, [Instance.from_box(0, 50, 50, 650, 850)]))
    write_dataset(Dataset(["outer", "graphic"], images, "yolo"), root / "src", root / "boxes", "yolo")
    return root / "boxes", truths


def corner_errors(refined: Dataset, truths: dict[str, dict[str, np.ndarray]]) -> dict[tuple[str, str], float]:
    errors = {}
    for image in refined.images:
        for instance in image.instances:
            role = ("outer", "graphic")[instance.class_id]
            name = Path(image.path).name
            if name in truths and not instance.is_box:
                errors[name, role] = float(np.abs(order_quad(instance.polygon) - order_quad(truths[name][role])).max())
    return errors


@pytest.fixture(scope="module")
def plain_cards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, np.ndarray]]]:
    """Three renders with nothing printed across the frame."""
    scenes = [scene_for(i, OPTIONS) for i in range(3)]
    scenes = [dataclasses.replace(s, look=dataclasses.replace(s.look, crossings=())) for s in scenes]
    return boxed_dataset(tmp_path_factory.mktemp("plain"), scenes)


def test_refined_quads_sit_on_the_true_edges(plain_cards: tuple[Path, dict]) -> None:
    root, truths = plain_cards
    dataset, problems = read_dataset(root)
    assert problems == []
    refined, refusals = refine_dataset(dataset, root)
    errors = corner_errors(refined, truths)
    assert len(errors) == 6  # every box of every card refined
    assert max(errors.values()) < 0.7, errors
    # The blank image has no card: its box is kept, with a warning that names the image and the reason.
    blank = next(image for image in refined.images if image.path.endswith("blank.png"))
    assert blank.instances[0].is_box
    assert [p.file for p in refusals] == [blank.path]
    assert refusals[0].severity == "warning" and "outer box kept, not refined" in refusals[0].message


def test_a_name_plate_across_the_frame_does_not_move_the_graphic_edge(tmp_path: Path) -> None:
    root, truths = boxed_dataset(tmp_path, [scene_for(1, OPTIONS)])  # this card's plate covers half the top edge
    dataset, _ = read_dataset(root)
    refined, _ = refine_dataset(dataset, root)
    errors = corner_errors(refined, truths)
    # Either a refusal (the graphic box stays a box) or a quad on the frame: never a confident wrong quad.
    assert errors.get(("card0.jpg", "graphic"), 0.0) < 0.7


def test_cards_with_plates_across_the_frame_refine_onto_it_or_are_refused(tmp_path: Path) -> None:
    # Plates over the top or bottom frame edge: two on one card, one at the end of a side (scene 15: refused).
    options = dataclasses.replace(OPTIONS, seed=1)
    scenes = [scene_for(i, options) for i in (1, 3, 7, 15, 16, 20)]
    assert all(any(c.kind == "plate" for c in s.look.crossings) for s in scenes)
    root, truths = boxed_dataset(tmp_path, scenes)
    dataset, _ = read_dataset(root)
    refined, _ = refine_dataset(dataset, root)
    errors = corner_errors(refined, truths)
    assert len(errors) >= 10, errors  # most boxes refined
    assert max(errors.values()) < 1.0, errors


def test_refine_command_writes_polygons_and_reports(plain_cards: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = plain_cards
    result = CliRunner().invoke(app, ["dataset", "refine", str(root), str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["boxes"], report["refined"]) == (7, 6)
    written, _ = read_dataset(tmp_path / "out")
    assert sum(not i.is_box for image in written.images for i in image.instances) == 6
