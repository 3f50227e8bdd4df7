"""The files `measure --out` writes: distinct names, the summary line, whole-or-nothing writes."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest

from cardmetry.geometry.specs import STANDARD
from cardmetry.measure.outputs import output_stems, summary_csv, summary_row
from cardmetry.measure.result import Measurement, PointResult, Refusal


@pytest.mark.parametrize(
    ("paths", "stems"),
    [
        (["a/card.jpg", "b/card.png"], ["card", "card-2"]),  # same name in two folders
        (["Card.jpg", "card.jpg", "CARD.tif"], ["Card", "card-2", "CARD-3"]),  # names that differ only in case
        (["x.jpg", "y.jpg"], ["x", "y"]),  # nothing to disambiguate
    ],
)
def test_output_stems_are_distinct(paths: list[str], stems: list[str]) -> None:
    assert output_stems([Path(p) for p in paths]) == stems


def test_summary_rows_for_a_measurement_and_a_refusal() -> None:
    points = [PointResult(s.id, s.edge, s.position_mm, 2.0, 0.001) for s in STANDARD.stations()]
    centering = {
        "left_right": [55.25, 44.75],
        "top_bottom": [50.0, 50.0],
        "worst_left_right": {"ratio": [57.0, 43.0], "station": 7},
        "worst_top_bottom": {"ratio": [51.0, 49.0], "station": 2},
    }
    measured = Measurement(
        "a.jpg", "front", STANDARD, np.zeros((4, 2)), np.zeros((4, 2)), 23.6, points, centering,
        {"frame": 0.1234}, ["weak graphic top edge"], 0.1, 0.1,
        grades={"psa": {"ceiling": 9, "table": "psa-2025"}, "sgc": {"ceiling": None, "table": "sgc"}},
    )  # fmt: skip
    refused = Refusal("b.jpg", "front", "no card found", ["resolution too low"])
    table = list(csv.DictReader(io.StringIO(summary_csv([summary_row(measured), summary_row(refused)]))))
    assert table[0]["left_right"] == "55.2/44.8" and table[0]["worst_left_right"] == "57.0/43.0 at station 7"
    assert table[0]["grades"] == "psa 9" and table[0]["frame_skew_deg"] == "0.123"
    assert table[0]["flags"] == "weak graphic top edge" and table[0]["reason"] == ""
    assert table[1]["status"] == "refused" and table[1]["reason"] == "no card found" and table[1]["left_right"] == ""
