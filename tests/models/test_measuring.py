"""Measuring a card with models: a model's coarse quad, snapped to the image's edges, then the engine."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from cardmetry.data.instances import GRAPHIC, OUTER, cv_to_label
from cardmetry.data.synth import Rendered, render, sample_scene
from cardmetry.geometry.lines import order_quad, quad_edges, quad_from_lines, signed_distance
from cardmetry.geometry.specs import STANDARD
from cardmetry.measure.engine import measure_borders
from cardmetry.measure.grades import load_tables
from cardmetry.measure.result import Measurement, Refusal
from cardmetry.models.base import ModelSpec, PredictedInstance
from cardmetry.models.letterbox import NetworkInput
from cardmetry.models.measuring import band_px, measure_with_models

IMGSZ = 384  # the fake models' input side: at 300 dpi a network pixel is about 3 image pixels


@pytest.fixture(scope="module")
def card() -> Rendered:
    return render(sample_scene(101, dpi=300, supersample=1))


def moved(quad: np.ndarray, px: float, signs: tuple[int, ...] = (1, -1, -1, 1), turn_deg: float = 0.0) -> np.ndarray:
    """A quad turned about its centre, then each side (top, right, bottom, left) moved `px` outward (sign +1) or
    inward (-1): what a model's coarse mask gives."""
    centre = quad.mean(axis=0)
    angle = np.radians(turn_deg)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    edges = quad_edges((quad - centre) @ rotation.T + centre)
    lines = []
    for side, sign in zip(("top", "right", "bottom", "left"), signs, strict=True):
        line = edges[side] if signed_distance(edges[side], centre) > 0 else -edges[side]
        lines.append(line + np.array([0.0, 0.0, sign * px]))
    return quad_from_lines(*lines)


class FakePredictor:
    """Returns fixed instances (polygons in OpenCV pixels here, given to the caller in the label convention)."""

    def __init__(self, *found: tuple[int, float, np.ndarray], classes: tuple[int, ...] = (OUTER,)) -> None:
        self.spec = ModelSpec("fake", "fixed", classes, IMGSZ)
        self.found = found
        self.calls = 0

    def predict(self, image: np.ndarray, prepared: NetworkInput | None = None) -> list[PredictedInstance]:
        self.calls += 1
        self.prepared = prepared
        self.thread = threading.current_thread().name
        mask = np.zeros(image.shape[:2], np.float32)  # not read by the measurement
        return [PredictedInstance(c, score, mask, cv_to_label(quad)) for c, score, quad in self.found]


def errors_mm(result: Measurement, card: Rendered) -> np.ndarray:
    truth = {w.station.id: w.border_mm for w in card.truth.widths}
    return np.array([p.border_mm - truth[p.id] for p in result.points])


def test_the_engine_alone_needs_coarse_edges_within_a_few_pixels(card: Rendered) -> None:
    # Why the model path snaps: 6 px off (two network pixels at 384 px) the engine's narrow window misses the edge.
    result = measure_borders(card.image, moved(card.truth.outer_quad_px, 6), card.truth.graphic_quad_px, STANDARD)
    assert isinstance(result, Refusal)


@pytest.mark.parametrize(
    ("outer_px", "graphic_px", "turn_deg"),
    [
        (0.0, 0.0, 0.0),  # a perfect model
        (3.0, -3.0, 0.0),  # about a network pixel off, outward and inward
        (5.0, 5.0, 0.3),  # near two network pixels off and turned a little: beyond the engine's own window
        (6.0, 6.0, 0.0),  # two network pixels off: the snap (frame) and the agreement check (card) still hold
    ],
)
def test_models_coarse_quads_measure_within_micrometres(
    card: Rendered, outer_px: float, graphic_px: float, turn_deg: float
) -> None:
    outer = FakePredictor((OUTER, 0.9, moved(card.truth.outer_quad_px, outer_px, turn_deg=turn_deg)))
    graphic = FakePredictor(
        (GRAPHIC, 0.9, moved(card.truth.graphic_quad_px, graphic_px, turn_deg=-turn_deg)), classes=(GRAPHIC,)
    )
    result = measure_with_models(
        card.image, STANDARD, outer=outer, graphic=graphic, name="c.png", grade_tables=load_tables()
    )
    assert isinstance(result, Measurement), getattr(result, "reason", "")
    assert np.abs(errors_mm(result, card)).max() < 0.01
    assert np.abs(result.outer_quad_px - card.truth.outer_quad_px).max() < 0.2
    assert result.grades  # graded as measure_image grades
    assert {"outer_model", "graphic_model", "engine", "total"} <= set(result.timing_ms)
    assert outer.calls == graphic.calls == 1


def test_one_model_for_both_roles_runs_once_and_its_best_instances_are_used(card: Rendered) -> None:
    far_off = moved(card.truth.outer_quad_px, -40)  # a weaker instance well inside the card: must not be used
    both = FakePredictor(
        (OUTER, 0.4, far_off),
        (GRAPHIC, 0.8, moved(card.truth.graphic_quad_px, 2)),
        (OUTER, 0.9, moved(card.truth.outer_quad_px, -2)),
        classes=(OUTER, GRAPHIC),
    )
    result = measure_with_models(card.image, STANDARD, outer=both, graphic=both)
    assert isinstance(result, Measurement), getattr(result, "reason", "")
    assert np.abs(errors_mm(result, card)).max() < 0.01
    assert both.calls == 1 and "model" in result.timing_ms


@pytest.mark.parametrize(
    "model_role",
    [
        "outer",  # the graphic border found classically inside the model's card
        "graphic",  # the card found classically, the frame by the model
        None,  # no model at all: the classical path, as measure_image
    ],
)
def test_a_missing_model_falls_back_to_the_classical_detector(card: Rendered, model_role: str | None) -> None:
    outer = FakePredictor((OUTER, 0.9, moved(card.truth.outer_quad_px, 4))) if model_role == "outer" else None
    graphic = (
        FakePredictor((GRAPHIC, 0.9, moved(card.truth.graphic_quad_px, 4)), classes=(GRAPHIC,))
        if model_role == "graphic"
        else None
    )
    result = measure_with_models(card.image, STANDARD, outer=outer, graphic=graphic)
    assert isinstance(result, Measurement), getattr(result, "reason", "")
    assert np.abs(errors_mm(result, card)).max() < 0.03
    assert ("outer_model" in result.timing_ms) is (model_role == "outer")
    assert ("graphic_model" in result.timing_ms) is (model_role == "graphic")


def test_models_run_beside_the_classical_detectors_on_one_shared_input(card: Rendered) -> None:
    # Both passes in one background thread, handed the same letterboxed input (their input sizes are the same).
    outer = FakePredictor((OUTER, 0.9, moved(card.truth.outer_quad_px, 2)))
    graphic = FakePredictor((GRAPHIC, 0.9, moved(card.truth.graphic_quad_px, 2)), classes=(GRAPHIC,))
    result = measure_with_models(card.image, STANDARD, outer=outer, graphic=graphic)
    assert isinstance(result, Measurement), getattr(result, "reason", "")
    assert outer.thread == graphic.thread != threading.current_thread().name
    assert outer.prepared is graphic.prepared is not None
    assert outer.prepared.box.size == IMGSZ and outer.prepared.box.width == card.image.shape[1]


class BrokenPredictor(FakePredictor):
    def predict(self, image: np.ndarray, prepared: NetworkInput | None = None) -> list[PredictedInstance]:
        raise RuntimeError("the model file is unreadable")


@pytest.mark.parametrize("broken_role", ["outer", "graphic"])
def test_a_failing_model_raises_its_own_error(card: Rendered, broken_role: str) -> None:
    # An error in the background pass reaches the caller as it is: never a refusal, never a hang.
    good = FakePredictor((OUTER, 0.9, card.truth.outer_quad_px))
    broken = BrokenPredictor(classes=(GRAPHIC,))
    outer, graphic = (broken, None) if broken_role == "outer" else (good, broken)
    with pytest.raises(RuntimeError, match="unreadable"):
        measure_with_models(card.image, STANDARD, outer=outer, graphic=graphic)


def test_an_outline_leaning_off_the_card_along_a_side_is_checked_by_its_snapped_edges(card: Rendered) -> None:
    # The model's left edge runs 1.6 bands off the card at one end (along a sleeve's edge, say): its own outline
    # disagrees with the classical card, but along most of the side the card's edge lies within the band, and the
    # snapped edges agree. Without the second comparison this card was refused.
    outer = FakePredictor((OUTER, 0.9, card.truth.outer_quad_px))
    band = band_px(outer, card.image)
    leaning = order_quad(card.truth.outer_quad_px.copy())
    bottom_left = int(np.argmax(leaning[:, 1] - leaning[:, 0]))
    leaning[bottom_left, 0] -= 1.6 * band
    outer.found = ((OUTER, 0.9, leaning),)
    result = measure_with_models(card.image, STANDARD, outer=outer, graphic=None)
    assert isinstance(result, Measurement), getattr(result, "reason", "")
    assert np.abs(errors_mm(result, card)).max() < 0.01


def cut_off(quad: np.ndarray) -> np.ndarray:
    """The quad moved so that its left part lies outside the image."""
    return quad - np.array([quad[:, 0].min() + 50.0, 0.0])


@pytest.mark.parametrize(
    ("outer_found", "graphic_found", "reason"),
    [
        # the outer model finds nothing
        ((), None, "outer model: found no card"),
        # it finds only the other class
        (((GRAPHIC, 0.9, "graphic"),), None, "outer model: found no card"),
        # the graphic model finds nothing (the outer model did its part)
        (((OUTER, 0.9, "outer"),), (), "graphic model: found no graphic border"),
        # a card running off the image
        (((OUTER, 0.9, "cut"),), None, "outer model: the card the model found runs along the edge of the image "
                                       "(the card is cut off, or the model cannot tell it from the background)"),
        # an outline too far from any edge for the snap's band (3 network pixels and more), where the classical
        # detector finds the card: the two disagree
        (((OUTER, 0.9, "far"),), None, "outer model: the model and the classical detector disagree"),
        # a polygon of three points has no four sides
        (((OUTER, 0.9, "triangle"),), None, "outer model: the card's outline gives no four-sided shape"),
    ],
)
def test_what_the_models_cannot_give_is_refused_with_its_reason(
    card: Rendered, outer_found: tuple, graphic_found: tuple | None, reason: str
) -> None:
    quads = {
        "outer": card.truth.outer_quad_px,
        "graphic": card.truth.graphic_quad_px,
        "cut": cut_off(card.truth.outer_quad_px),
        "far": moved(card.truth.outer_quad_px, 30.0, (1, 1, 1, 1)),
        "triangle": card.truth.outer_quad_px[:3],
    }
    outer = FakePredictor(*((c, s, quads[q]) for c, s, q in outer_found))
    graphic = None if graphic_found is None else FakePredictor(*graphic_found, classes=(GRAPHIC,))
    result = measure_with_models(card.image, STANDARD, outer=outer, graphic=graphic, name="c.png", side="back")
    assert isinstance(result, Refusal)
    assert result.reason.startswith(reason), result.reason
    assert (result.image, result.side) == ("c.png", "back")
    assert "total" in result.timing_ms


def test_the_edge_nearer_the_models_is_taken_where_a_name_plate_crosses_the_frame() -> None:
    # Seed 203: a name plate crosses the frame's bottom edge, its own edge lying 5 to 8 px outside the frame's along
    # more of the side than the frame shows; the first-edge-from-the-border rule takes the plate's edge there.
    plate = render(sample_scene(203, dpi=300, supersample=1))
    outer = FakePredictor((OUTER, 0.9, moved(plate.truth.outer_quad_px, 2)))
    graphic = FakePredictor((GRAPHIC, 0.9, moved(plate.truth.graphic_quad_px, 2)), classes=(GRAPHIC,))
    result = measure_with_models(plate.image, STANDARD, outer=outer, graphic=graphic)
    assert isinstance(result, Measurement), getattr(result, "reason", "")
    assert np.abs(result.graphic_quad_px - plate.truth.graphic_quad_px).max() < 0.5
    assert np.abs(errors_mm(result, plate)).max() < 0.03
