"""Files written whole or not at all."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest

from cardmetry.measure.files import write_png, write_text_atomic


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
