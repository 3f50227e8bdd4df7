"""Gauge repeatability: how much the 24 widths move when the same card is measured again.

Two sources of repeated measurements of one card: several captures (the card scanned again, by the same or
another operator: repeatability and reproducibility in the gauge R&R sense), or one capture perturbed N times by
what a rescan changes (a small rotation, a rescale, JPEG recompression, a slight perspective), which estimates
repeatability without a scanner. The spread per station (std and range in mm) is what a grader quotes next to a
width: a 0.005 mm difference between two cards means nothing if one card's widths wander by 0.02 mm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from cardmetry.measure.files import decode_image, encode_image
from cardmetry.measure.result import Measurement, Refusal


@dataclass(frozen=True)
class Perturbation:
    """One simulated rescan: rotation about the image centre, uniform rescale, corner jitter, JPEG quality."""

    rotation_deg: float
    scale: float
    corner_shift_px: np.ndarray  # (4, 2) shifts of the image corners: a slight perspective
    jpeg_quality: int

    def as_json(self) -> dict[str, object]:
        return {
            "rotation_deg": round(self.rotation_deg, 4),
            "scale": round(self.scale, 5),
            "corner_shift_px": np.round(self.corner_shift_px, 3).tolist(),
            "jpeg_quality": self.jpeg_quality,
        }


def sample_perturbations(
    count: int,
    seed: int = 0,
    *,
    max_rotation_deg: float = 2.0,
    max_rescale: float = 0.03,
    max_corner_shift_px: float = 2.0,
    jpeg_quality: tuple[int, int] = (85, 95),
) -> list[Perturbation]:
    """`count` perturbations drawn from a seeded generator: the same seed gives the same rescans."""
    rng = np.random.default_rng(seed)
    return [
        Perturbation(
            rotation_deg=float(rng.uniform(-max_rotation_deg, max_rotation_deg)),
            scale=float(1 + rng.uniform(-max_rescale, max_rescale)),
            corner_shift_px=rng.uniform(-max_corner_shift_px, max_corner_shift_px, (4, 2)),
            jpeg_quality=int(rng.integers(jpeg_quality[0], jpeg_quality[1] + 1)),
        )
        for _ in range(count)
    ]


def perturb(image: np.ndarray, perturbation: Perturbation) -> np.ndarray:
    """The image as a rescan under `perturbation` would record it (same size, RGB or grey uint8).

    Rotation, rescale and perspective are one homography applied with bicubic interpolation; the border is
    replicated so no artificial edge appears near the card. The result goes through a JPEG round trip because a
    rescan saved as JPEG loses different detail each time.
    """
    height, width = image.shape[:2]
    corners = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.float64)
    centre = corners.mean(axis=0)
    angle = np.radians(perturbation.rotation_deg)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = (corners - centre) @ rotation.T * perturbation.scale + centre + perturbation.corner_shift_px
    homography = cv2.getPerspectiveTransform(corners.astype(np.float32), moved.astype(np.float32))
    warped = cv2.warpPerspective(
        image, homography, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )
    return decode_image(encode_image(warped, ".jpg", perturbation.jpeg_quality), colour=warped.ndim == 3)


@dataclass(frozen=True)
class StationSpread:
    id: str
    mean_mm: float
    std_mm: float  # sample standard deviation (ddof=1) over the repeated measurements
    range_mm: float  # largest minus smallest

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "mean_mm": round(self.mean_mm, 4),
            "std_mm": round(self.std_mm, 4),
            "range_mm": round(self.range_mm, 4),
        }


@dataclass(frozen=True)
class Repeatability:
    """The spread of repeated measurements of one card; refusals are counted, never averaged in."""

    measured: int
    refused: list[str]  # the reasons, one per refused repeat
    stations: list[StationSpread]
    left_share_std: float  # std of the left share (percentage points) of the mean left/right centering
    top_share_std: float

    @property
    def median_std_mm(self) -> float:
        return float(np.median([s.std_mm for s in self.stations]))

    @property
    def worst_station(self) -> StationSpread:
        return max(self.stations, key=lambda s: s.std_mm)

    def as_json(self) -> dict[str, object]:
        return {
            "measured": self.measured,
            "refused": list(self.refused),
            "median_station_std_mm": round(self.median_std_mm, 4),
            "worst_station": self.worst_station.as_json(),
            "left_share_std_pp": round(self.left_share_std, 3),
            "top_share_std_pp": round(self.top_share_std, 3),
            "stations": [s.as_json() for s in self.stations],
        }


def repeatability(results: Sequence[Measurement | Refusal]) -> Repeatability:
    """Per-station spread over repeated measurements of one card; at least two must have measured."""
    measured = [r for r in results if isinstance(r, Measurement)]
    refused = [r.reason for r in results if isinstance(r, Refusal)]
    if len(measured) < 2:
        raise ValueError(
            f"repeatability needs at least two measurements of the card; {len(measured)} measured and "
            f"{len(refused)} refused" + (f" (first reason: {refused[0]})" if refused else "")
        )
    ids = [p.id for p in measured[0].points]
    widths = np.array([[p.border_mm for p in m.points] for m in measured])  # (repeats, 24)
    stations = [
        StationSpread(sid, float(col.mean()), float(col.std(ddof=1)), float(col.max() - col.min()))
        for sid, col in zip(ids, widths.T, strict=True)
    ]
    left = np.array([m.centering["left_right"][0] for m in measured])
    top = np.array([m.centering["top_bottom"][0] for m in measured])
    return Repeatability(len(measured), refused, stations, float(left.std(ddof=1)), float(top.std(ddof=1)))
