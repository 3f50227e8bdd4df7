"""Measuring without a model: classical borders on renders, refusals with reasons, and the command's contract."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from cardmetry.cli import app
from cardmetry.data.synth import render, sample_scene
from cardmetry.geometry.specs import STANDARD
from cardmetry.measure.classical import detect_graphic, detect_outer


@pytest.mark.parametrize("seed", [201, 207])  # a scan on the dark lid; one on a textured desk
def test_classical_borders_are_within_a_few_pixels(seed: int) -> None:
    rendered = render(sample_scene(seed, dpi=300))
    outer = detect_outer(rendered.image, STANDARD)
    assert not isinstance(outer, str), outer
    assert np.abs(outer - rendered.truth.outer_quad_px).max() < 3
    graphic = detect_graphic(rendered.image, outer, STANDARD)
    assert not isinstance(graphic, str), graphic
    assert np.abs(graphic - rendered.truth.graphic_quad_px).max() < 3


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: np.full((600, 450, 3), 90, np.uint8), "does not stand out"),  # an empty scanner bed
        (lambda: _card_cut_off(), "cut off"),  # the card runs off the image
    ],
)
def test_outer_refusals_say_why(make, reason: str) -> None:
    result = detect_outer(make(), STANDARD)
    assert isinstance(result, str) and reason in result


def _card_cut_off() -> np.ndarray:
    image = np.full((600, 450, 3), 40, np.uint8)
    cv2.rectangle(image, (100, -50), (400, 400), (230, 230, 230), -1)
    return image


def test_measure_command_prints_only_the_contract_document(tmp_path: Path) -> None:
    rendered = render(sample_scene(201, dpi=300))
    path = tmp_path / "card.png"
    cv2.imwrite(str(path), cv2.cvtColor(rendered.image, cv2.COLOR_RGB2BGR))
    result = CliRunner().invoke(app, ["measure", str(path), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["status"] == "ok" and len(document["points"]) == 24
    truth = {w.station.id: w.border_mm for w in rendered.truth.widths}
    assert max(abs(p["border_mm"] - truth[p["id"]]) for p in document["points"]) < 0.01


def test_measure_command_refuses_with_a_reason_and_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    cv2.imwrite(str(path), np.full((600, 450, 3), 90, np.uint8))
    result = CliRunner().invoke(app, ["measure", str(path), "--json"])
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["status"] == "refused" and "does not stand out" in document["reason"]
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 not really a jpeg")
    result = CliRunner().invoke(app, ["measure", str(corrupt), "--json"])
    assert result.exit_code == 1 and "corrupt.jpg" in json.loads(result.stdout)["reason"]
