"""Dataset statistics against the renderer's truth."""

from __future__ import annotations

import pytest

from cardmetry.data.instances import GRAPHIC, OUTER, Instance, LabeledImage
from cardmetry.data.stats import image_borders
from cardmetry.data.synth.scene import sample_scene
from cardmetry.data.synth.truth import compute_truth, place
from cardmetry.geometry.specs import card_spec
from cardmetry.geometry.stations import side_means


@pytest.mark.parametrize(
    ("seed", "photo", "landscape", "spec"),
    [
        (1, False, False, "standard"),  # a scan, upright
        (2, True, False, "standard"),  # a photo: perspective
        (3, True, True, "small"),  # a small card lying sideways in a photo
        (6, False, True, "standard"),  # a scan lying sideways, turned the other way
    ],
)
def test_border_widths_from_polygons_match_the_truth(seed: int, photo: bool, landscape: bool, spec: str) -> None:
    scene = sample_scene(seed, photo=photo, landscape=landscape, spec=spec)
    placement = place(scene)
    truth = compute_truth(scene, placement)
    image = LabeledImage(
        "card.png",
        placement.width,
        placement.height,
        [Instance(OUTER, truth.outer_polygon), Instance(GRAPHIC, truth.graphic_polygon)],
    )
    borders = image_borders(image, card_spec(spec))
    assert borders is not None
    expected = side_means(truth.widths)
    for side in expected:
        assert borders["side_means_mm"][side] == pytest.approx(expected[side], abs=1e-6)


def test_boxes_give_no_border_widths() -> None:
    image = LabeledImage(
        "card.png", 100, 140, [Instance.from_box(OUTER, 1, 1, 99, 139), Instance.from_box(GRAPHIC, 5, 5, 95, 135)]
    )
    assert image_borders(image) is None
