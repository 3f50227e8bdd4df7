"""Card specifications and the 24-point station layout of CONTRACT.md.

A card spec carries the physical size and where the 24 stations sit on each edge. Positions are literal
millimetres in the rectified card frame: u to the right, v down, origin at the top-left corner of the outline
with its rounded corners squared off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Edge = Literal["left", "right", "top", "bottom"]
EDGES: tuple[Edge, ...] = ("left", "right", "top", "bottom")
EDGE_PREFIX: dict[Edge, str] = {"left": "L", "right": "R", "top": "T", "bottom": "B"}

_INCH_MM = 25.4


@dataclass(frozen=True)
class Station:
    """One of the 24 measuring points: an edge and a position along it (mm)."""

    id: str
    edge: Edge
    position_mm: float

    @property
    def index(self) -> int:
        """1-based index along its edge (L1..L7, T1..T5)."""
        return int(self.id[1:])


@dataclass(frozen=True)
class CardSpec:
    name: str
    width_mm: float
    height_mm: float
    corner_radius_mm: float
    side_positions_mm: tuple[float, ...]  # v of L1..Ln and R1..Rn
    end_positions_mm: tuple[float, ...]  # u of T1..Tn and B1..Bn

    @property
    def size_mm(self) -> tuple[float, float]:
        return (self.width_mm, self.height_mm)

    @property
    def aspect(self) -> float:
        """Height over width of the portrait card."""
        return self.height_mm / self.width_mm

    def stations(self) -> list[Station]:
        """The 24 stations in CONTRACT order: L1..L7, R1..R7, T1..T5, B1..B5."""
        out: list[Station] = []
        for edge in EDGES:
            positions = self.side_positions_mm if edge in ("left", "right") else self.end_positions_mm
            out.extend(Station(f"{EDGE_PREFIX[edge]}{k}", edge, p) for k, p in enumerate(positions, start=1))
        return out

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "width_mm": self.width_mm, "height_mm": self.height_mm}


def _quarter_inch_stations(length_mm: float, count: int) -> tuple[float, ...]:
    """Stations 0.25 in from the end and every 0.5 in after it, as CONTRACT.md fixes for a standard card."""
    positions = tuple(round((0.25 + 0.5 * k) * _INCH_MM, 4) for k in range(count))
    if positions[-1] >= length_mm:
        raise ValueError(f"{count} stations do not fit on an edge of {length_mm} mm")
    return positions


def _scaled_stations(reference: tuple[float, ...], reference_mm: float, length_mm: float) -> tuple[float, ...]:
    """The reference layout scaled to another edge length: station k keeps its relative place on the edge, so the
    end stations stay as far inside the border corners as on a standard card."""
    return tuple(round(p * length_mm / reference_mm, 4) for p in reference)


STANDARD = CardSpec(
    name="standard",
    width_mm=63.5,
    height_mm=88.9,
    corner_radius_mm=3.0,
    side_positions_mm=_quarter_inch_stations(88.9, 7),
    end_positions_mm=_quarter_inch_stations(63.5, 5),
)

# Japanese / small cards (59 x 86 mm): the standard layout scaled to the card, so station k means the same place.
SMALL = CardSpec(
    name="small",
    width_mm=59.0,
    height_mm=86.0,
    corner_radius_mm=3.0,
    side_positions_mm=_scaled_stations(STANDARD.side_positions_mm, STANDARD.height_mm, 86.0),
    end_positions_mm=_scaled_stations(STANDARD.end_positions_mm, STANDARD.width_mm, 59.0),
)

CARD_SPECS: dict[str, CardSpec] = {spec.name: spec for spec in (STANDARD, SMALL)}


def card_spec(name: str) -> CardSpec:
    """Look a spec up by name, with an error that lists the names there are."""
    try:
        return CARD_SPECS[name]
    except KeyError:
        raise ValueError(f"unknown card spec {name!r}; known: {', '.join(sorted(CARD_SPECS))}") from None
