"""Files written whole or not at all."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest

from cardmetry.measure.files import as_rgb, decode_image, encode_image, write_png, write_text_atomic


def test_atomic_write_leaves_the_old_file_and_no_temporary_when_it_fails(tmp_path: Path) -> None:
    target = tmp_path / "card.json"
    write_text_atomic(target, "first")
    write_text_atomic(target, "second")  # over an existing file
    assert target.read_text() == "second"
    (tmp_path / "folder.json").mkdir()
    with pytest.raises(OSError, match=r"folder\.json"):
        write_text_atomic(tmp_path / "folder.json", "x")  # the rename fails after the temporary file was written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card.json", "folder.json"]
    with pytest.raises(OSError, match="missing"):
        write_text_atomic(tmp_path / "missing" / "card.json", "x")


def test_write_png_round_trips_atomically(tmp_path: Path) -> None:
    overlay = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    target = tmp_path / "overlay.png"
    write_png(target, overlay)
    write_png(target, overlay)  # over an existing file too
    back = cv2.cvtColor(cv2.imread(str(target)), cv2.COLOR_BGR2RGB)
    assert np.array_equal(back, overlay)
    assert [p.name for p in tmp_path.iterdir()] == ["overlay.png"]  # no temporary file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # as open() would make it, not mkstemp's 0600


def test_write_png_names_the_path_it_could_not_write(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "overlay.png"
    with pytest.raises(OSError, match=re.escape(str(Path("missing") / "overlay.png"))):
        write_png(target, np.zeros((4, 4, 3), np.uint8))
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize(
    ("image", "error"),
    [
        (np.zeros((4, 5), np.uint8), None),  # grey: repeated into three channels
        (np.zeros((4, 5, 4), np.uint8), None),  # RGBA: alpha dropped
        (np.zeros((4, 5, 3), np.float32), "uint8"),  # a float image is not drawn on as if it were 8-bit
        (np.zeros((4, 5, 2), np.uint8), "shape"),  # two channels: neither grey nor colour
    ],
)
def test_as_rgb(image: np.ndarray, error: str | None) -> None:
    if error:
        with pytest.raises(ValueError, match=error):
            as_rgb(image)
    else:
        assert as_rgb(image).shape == (4, 5, 3)


def test_jpeg_round_trip_keeps_colour_order_and_loses_little() -> None:
    image = np.zeros((32, 32, 3), np.uint8)
    image[:, :, 0] = 200  # red: a swapped channel order would come back blue
    back = decode_image(encode_image(image, ".jpg", 95))
    assert back.shape == image.shape and np.abs(back.astype(int) - image).max() <= 3
