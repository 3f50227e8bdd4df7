"""What a measurement is, and its JSON (CONTRACT.md, schema cardmetry.measurement/v1)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cardmetry.geometry.specs import CardSpec

SCHEMA = "cardmetry.measurement/v1"


@dataclass(frozen=True)
class PointResult:
    id: str
    edge: str
    position_mm: float
    border_mm: float
    uncertainty_mm: float

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "edge": self.edge,
            "position_mm": self.position_mm,
            "border_mm": round(self.border_mm, 4),
            "uncertainty_mm": round(self.uncertainty_mm, 4),
        }


@dataclass(frozen=True, eq=False)
class Measurement:
    image: str
    side: str
    spec: CardSpec
    outer_quad_px: np.ndarray
    graphic_quad_px: np.ndarray
    px_per_mm: float
    points: list[PointResult]
    centering: dict[str, object]
    skew_deg: dict[str, float]
    flags: list[str]
    outer_fit_rms_px: float
    graphic_fit_rms_px: float
    grades: dict[str, object] = field(default_factory=dict)
    timing_ms: dict[str, float] = field(default_factory=dict)

    status = "ok"

    def as_json(self) -> dict[str, object]:
        return {
            "schema": SCHEMA,
            "status": "ok",
            "image": self.image,
            "side": self.side,
            "card_spec": self.spec.as_json(),
            "outer_quad_px": np.round(self.outer_quad_px, 3).tolist(),
            "graphic_quad_px": np.round(self.graphic_quad_px, 3).tolist(),
            "px_per_mm": round(self.px_per_mm, 3),
            "points": [p.as_json() for p in self.points],
            "centering": _rounded(self.centering),
            "skew_deg": {k: round(v, 3) for k, v in self.skew_deg.items()},
            "grades": self.grades,
            "quality": {
                "flags": list(self.flags),
                "outer_fit_rms_px": round(self.outer_fit_rms_px, 3),
                "graphic_fit_rms_px": round(self.graphic_fit_rms_px, 3),
            },
            "timing_ms": {k: round(v, 1) for k, v in self.timing_ms.items()},
        }


@dataclass(frozen=True)
class Refusal:
    """No measurement, and why: nothing in it may be read as a border width."""

    image: str
    side: str
    reason: str
    flags: list[str] = field(default_factory=list)
    timing_ms: dict[str, float] = field(default_factory=dict)

    status = "refused"

    def as_json(self) -> dict[str, object]:
        return {
            "schema": SCHEMA,
            "status": "refused",
            "reason": self.reason,
            "image": self.image,
            "side": self.side,
            "quality": {"flags": list(self.flags)},
            "timing_ms": {k: round(v, 1) for k, v in self.timing_ms.items()},
        }


Result = Measurement | Refusal  # what measuring one image gives


def _rounded(value: object) -> object:
    if isinstance(value, float):
        return round(value, 2)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value
