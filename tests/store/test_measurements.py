"""Grading folders: ids and served names checked before they become paths, uploads kept whole and capped, meta.json
last, the predictor cache, and which model serves each role."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from cardmetry.store.home import Home
from cardmetry.store.measurements import (
    META_KEYS,
    GradingFolder,
    TooLargeError,
    UnreadableImageError,
    check_id,
    check_served_name,
    new_id,
    read_meta,
    recent,
    shown_name,
)


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path / "home")


def png_bytes(width: int = 40, height: int = 30) -> bytes:
    ok, encoded = cv2.imencode(".png", np.full((height, width, 3), 128, np.uint8))
    assert ok
    return encoded.tobytes()


def test_ids_sort_by_time_and_pass_their_own_check() -> None:
    earlier, later = new_id(1_700_000_000.0), new_id(1_700_000_000.5)
    assert earlier < later and check_id(earlier) == earlier
    assert new_id(1_700_000_000.0) != earlier  # the random part tells two at once apart


@pytest.mark.parametrize(
    "measurement_id",
    [
        "..",  # a climb
        "../20261129T110821123456-1a2b3c4d",  # a climb before a good id
        "20261129T110821123456-1a2b3c4d/x",  # a path below a good id
        "20261129T110821123456-1a2b3c4d\n",  # a trailing newline ($ in a regex would let it through)
        "20261129T110821123456-1A2B3C4D",  # upper-case hex
        "",  # nothing
    ],
)
def test_anything_but_an_id_is_refused(measurement_id: str) -> None:
    with pytest.raises(ValueError, match="invalid measurement id"):
        check_id(measurement_id)


@pytest.mark.parametrize(
    ("name", "served"),
    [
        ("front.json", True),  # the document
        ("back.overlay.png", True),  # the overlay
        ("front.report.html", True),  # the customer's report
        ("meta.json", False),  # the folder's own record
        ("front.png", False),  # the upload
        ("side.json", False),  # not a side
        ("../front.json", False),  # a climb
    ],
)
def test_only_a_sides_outputs_are_served(name: str, served: bool) -> None:
    if served:
        assert check_served_name(name) == name
    else:
        with pytest.raises(ValueError, match="not a file a grading holds"):
            check_served_name(name)


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("card.jpg", "card.jpg"),  # a plain name
        ("C:\\fakepath\\card.jpg", "card.jpg"),  # what some browsers send
        ("../../etc/passwd", "passwd"),  # a path: only its last part, and only ever shown
        ("a\x00b\nc.png", "abc.png"),  # control characters dropped
        ("", "front"),  # no name: the side
        (None, "front"),  # no name at all
    ],
)
def test_upload_names_are_kept_as_plain_names(given: str | None, shown: str) -> None:
    assert shown_name(given, "front") == shown


def test_a_saved_image_is_whole_hashed_and_named_by_its_kind(home: Home) -> None:
    folder = GradingFolder(home)
    data = png_bytes()
    named = folder.save_image("front", "Scan.PNG", io.BytesIO(data))
    assert named.path.name == "front.png" and named.sha256 == hashlib.sha256(data).hexdigest()
    unnamed = folder.save_image("back", "photo-without-suffix", io.BytesIO(data))
    assert unnamed.path.name == "back.png"  # the kind read from its header
    assert folder.load(unnamed).shape == (30, 40, 3)
    assert sorted(p.name for p in folder.path.iterdir()) == ["back.png", "front.png"]  # no partial file left


def test_an_upload_over_the_cap_stops_and_leaves_nothing(home: Home) -> None:
    folder = GradingFolder(home)
    with pytest.raises(TooLargeError, match=r"big\.png: over the limit"):
        folder.save_image("front", "big.png", io.BytesIO(b"x" * 5000), max_bytes=4096)
    assert list(folder.path.iterdir()) == []


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "empty file"),  # nothing sent
        (b"\xff\xd8 not a jpeg", "not a readable image"),  # bytes that are no image
    ],
)
def test_an_unusable_upload_is_named_with_its_problem(home: Home, data: bytes, problem: str) -> None:
    folder = GradingFolder(home)
    with pytest.raises(UnreadableImageError, match=rf"front image card\.jpg: {problem}"):
        folder.load(folder.save_image("front", "card.jpg", io.BytesIO(data)))


def test_meta_json_is_written_last_with_exactly_the_indexed_keys(home: Home) -> None:
    folder = GradingFolder(home)
    front = folder.save_image("front", "f.png", io.BytesIO(png_bytes()))
    back = folder.save_image("back", "b.png", io.BytesIO(png_bytes(50)))
    assert recent(home) == []  # not finished: not listed
    with pytest.raises(FileNotFoundError):
        read_meta(home, folder.id)
    meta = folder.finish([back, front], {"outer": "run-1", "graphic": None})
    assert tuple(meta) == META_KEYS
    assert meta["sides"] == ["front", "back"] and meta["name"] == "f.png"  # sides in order, named by the front
    assert meta["sha256"] == {"front": front.sha256, "back": back.sha256}
    assert (meta["outer_model"], meta["graphic_model"]) == ("run-1", None)
    assert json.loads((folder.path / "meta.json").read_text()) == meta == read_meta(home, folder.id)


def test_recent_lists_finished_gradings_newest_first(home: Home) -> None:
    made = []
    for stamp in (1_700_000_000.0, 1_700_000_100.0, 1_700_000_050.0):
        folder = GradingFolder(home, new_id(stamp))
        folder.finish([folder.save_image("front", "f.png", io.BytesIO(png_bytes()))], {})
        made.append(folder.id)
    GradingFolder(home)  # being written: no meta.json yet
    (home.root / "measurements" / "not-an-id").mkdir()
    assert [m["id"] for m in recent(home)] == sorted(made, reverse=True)
    assert [m["id"] for m in recent(home, limit=1)] == [max(made)]
