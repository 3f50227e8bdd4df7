"""The 24-point layout of CONTRACT.md."""

from __future__ import annotations

import pytest

from cardmetry.geometry.specs import SMALL, STANDARD, card_spec


def test_standard_layout_matches_the_contract() -> None:
    stations = STANDARD.stations()
    assert [s.id for s in stations] == [f"L{k}" for k in range(1, 8)] + [f"R{k}" for k in range(1, 8)] + [
        f"T{k}" for k in range(1, 6)
    ] + [f"B{k}" for k in range(1, 6)]
    assert STANDARD.side_positions_mm == (6.35, 19.05, 31.75, 44.45, 57.15, 69.85, 82.55)
    assert STANDARD.end_positions_mm == (6.35, 19.05, 31.75, 44.45, 57.15)
    by_id = {s.id: s for s in stations}
    assert by_id["L4"].position_mm == pytest.approx(STANDARD.height_mm / 2, abs=1e-9)  # L4 is the centre
    assert by_id["T3"].position_mm == pytest.approx(STANDARD.width_mm / 2, abs=1e-9)  # T3 is the centre


def test_small_layout_keeps_relative_places() -> None:
    assert len(SMALL.stations()) == 24
    for standard, small in zip(STANDARD.stations(), SMALL.stations(), strict=True):
        length_std = STANDARD.height_mm if standard.edge in ("left", "right") else STANDARD.width_mm
        length_small = SMALL.height_mm if small.edge in ("left", "right") else SMALL.width_mm
        assert small.position_mm / length_small == pytest.approx(standard.position_mm / length_std, abs=1e-4)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("standard", None),  # the 2.5 x 3.5 in card
        ("small", None),  # 59 x 86 mm
        ("poker", "unknown card spec 'poker'"),  # an unknown name lists the known ones
    ],
)
def test_card_spec_lookup(name: str, expected: str | None) -> None:
    if expected is None:
        assert card_spec(name).name == name
    else:
        with pytest.raises(ValueError, match=expected):
            card_spec(name)
