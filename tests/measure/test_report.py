"""The HTML report: the JSON's figures, all of them, in a page that needs nothing from outside itself, with every
string from the result escaped; a refusal's page carries its reason and no numbers."""

from __future__ import annotations

import base64
import re
from dataclasses import replace
from html.parser import HTMLParser

import cv2
import numpy as np
import pytest

from cardmetry.measure.report import CARD_IMAGE_PX, render_report
from cardmetry.measure.result import Refusal

GRADES = {
    "psa": {"ceiling": 10, "table": "psa-2025", "label": "Gem Mint"},
    "sgc": {"ceiling": None, "sourced": False, "note": "no primary source <yet>"},
}


class Page(HTMLParser):
    """Table rows as lists of cell texts, image sources, and whether a script or stylesheet link appears."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.sources: list[str] = []
        self.tags: set[str] = set()
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.sources.append(dict(attrs).get("src") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def card(measured_card):
    rendered, result = measured_card
    return rendered.image, replace(result, grades=GRADES)


@pytest.fixture(scope="module")
def page(card) -> str:
    image, result = card
    return render_report(image, result)


def test_all_24_points_with_their_json_values(card, page: str) -> None:
    _, result = card
    rows = {row[0]: row for row in Page(page).rows if row}
    points = result.as_json()["points"]
    assert len(points) == 24
    for point in points:
        row = rows[point["id"]]
        assert float(row[1]) == point["position_mm"]
        assert float(row[2]) == point["border_mm"]
        assert float(row[3].lstrip("± ")) == point["uncertainty_mm"]


def test_centering_skew_and_quality_are_there(card, page: str) -> None:
    _, result = card
    doc = result.as_json()
    rows = {row[0]: row for row in Page(page).rows if row}
    lr = doc["centering"]["left_right"]
    assert rows["Left / right"][1] == f"{lr[0]:.1f} / {lr[1]:.1f}"
    k = doc["centering"]["worst_top_bottom"]["station"]
    assert rows["Top / bottom"][2] == f"T{k} / B{k}"
    assert f"{doc['px_per_mm']} px/mm" in page
    assert doc["schema"] in page
    assert "rectified card frame" in page and "ceilings from centering alone" in page
    assert "@media print" in page


def test_the_page_is_self_contained(page: str) -> None:
    parsed = Page(page)
    assert not re.search(r"https?://|src=\"/|href=|url\(|@import", page)
    assert not parsed.tags & {"script", "link", "iframe", "object"}
    assert len(parsed.sources) == 2
    assert all(src.startswith("data:image/") for src in parsed.sources)
    assert len(page) < 3_000_000


def test_the_card_image_is_downscaled(page: str) -> None:
    card_src = Page(page).sources[0]
    data = base64.b64decode(card_src.split(",", 1)[1])
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None and max(decoded.shape[:2]) <= CARD_IMAGE_PX


def test_a_given_overlay_is_the_one_embedded(card) -> None:
    image, result = card
    red = np.zeros((300, 200, 3), np.uint8)
    red[:] = (255, 0, 0)
    src = Page(render_report(image, result, overlay=red)).sources[1]
    decoded = cv2.imdecode(np.frombuffer(base64.b64decode(src.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape[:2] == (300, 200)
    assert np.allclose(decoded[150, 100], (0, 0, 255), atol=8)  # BGR from OpenCV: red


def test_strings_from_the_result_are_escaped(card) -> None:
    image, result = card
    hostile = replace(result, image="<script>alert(1)</script>.png", flags=['<img src=x onerror="alert(2)">'])
    text = render_report(image, hostile)
    assert "<script>" not in text and "<img src=x" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.png" in text
    assert "no primary source &lt;yet&gt;" in text
    assert "script" not in Page(text).tags


def test_grades_render_generically_and_unsourced_is_said(page: str) -> None:
    rows = {row[0]: row for row in Page(page).rows if row}
    assert rows["PSA"][1:] == ["10", "psa-2025", "Gem Mint"]
    assert rows["SGC"][1] == "not graded (unsourced)"
    assert rows["SGC"][3] == "no primary source <yet>"


def test_no_grades_says_so(card) -> None:
    image, result = card
    assert "No grade tables" in render_report(image, replace(result, grades={}))


def test_a_refusal_page_has_the_reason_and_no_numbers(card) -> None:
    image, _ = card
    refusal = Refusal("c<1>.png", "back", "outer left edge: no step <found>", ["weak graphic top edge"])
    text = render_report(image, refusal)
    parsed = Page(text)
    assert "outer left edge: no step &lt;found&gt;" in text
    assert "weak graphic top edge" in text
    assert "c&lt;1&gt;.png" in text
    assert parsed.rows == []  # no station table, no centering, no grades
    body = re.sub(r'data:image/[^"]+', "", text.split("<body>", 1)[1])
    assert not re.search(r"\b[LRTB][1-7]\b|border \(mm\)|\d+\.\d+ / \d|ceiling|px/mm", body)
    assert len(parsed.sources) == 1 and parsed.sources[0].startswith("data:image/")


def test_a_grade_entry_of_another_shape_is_shown_not_guessed(card) -> None:
    image, result = card
    text = render_report(image, replace(result, grades={"bgs": {"front": {"ceiling": 9.5}}}))
    row = next(row for row in Page(text).rows if row and row[0] == "BGS")
    assert row[1] == "" and "9.5" in row[3]


def test_nested_ceilings_and_markers_read_as_words(card) -> None:
    image, result = card
    grades = {
        "psa": {
            "ceiling": 9,
            "label": "MINT",
            "table": "psa-2025",
            "sourced": True,
            "with_leeway": {"ceiling": 10, "label": "GEM-MT"},
            "below_table": True,
        },
        "cgc": {"ceiling": None, "label": None, "table": "cgc-2026", "sourced": True, "note": "no back limits"},
    }
    rows = {row[0]: row for row in Page(render_report(image, replace(result, grades=grades))).rows if row}
    assert rows["PSA"][1] == "9"
    assert "with leeway: 10 (GEM-MT)" in rows["PSA"][3] and "below table" in rows["PSA"][3]
    assert rows["CGC"][1] == "no ceiling"  # sourced, but nothing listed for this side: not "unsourced"
