"""Quality flags from the image around a measured card: what a person should check by eye.

`suspected_sleeve_edge`: a penny sleeve's or a toploader's edge is a second straight edge parallel to the card's,
a few millimetres outside it. The classical detector passes over it to the card's own edge, but a model, or an
edge fit started near it, could take one for the other; and a holder's wall can hide the card's edge.
"""

from __future__ import annotations

import numpy as np

from cardmetry.geometry.edges import fit_line_robust, locate_edges, sample_profiles
from cardmetry.geometry.lines import angle_between_deg, line_through, quad_side_ends, signed_distance
from cardmetry.geometry.specs import CardSpec
from cardmetry.measure.classical import Reduced, content_box

SLEEVE_NEAR_MM, SLEEVE_FAR_MM = 0.3, 6.0  # a sleeve's edge lies 0.5 to 6 mm outside the card, a toploader's 3 to 6
MIN_SLEEVE_SIDES = 2  # one straight line beside a card may be anything (a desk's edge); a holder frames the card
_MIN_SHARE = 0.5  # profiles along a side whose strongest edge lies on one line
_MAX_ANGLE_DEG = 1.5  # a card is never quite square in its holder
_SIGMA_PX = 1.0
_MIN_CONTRAST = 8.0  # grey levels: a clear sleeve's edge is a faint bright line on a dark lid


def suspected_sleeve_edge(
    image: np.ndarray, outer_quad: np.ndarray, spec: CardSpec, *, reduced: Reduced | None = None
) -> str | None:
    """A flag when a straight edge parallel to the card's lies just outside it along at least `MIN_SLEEVE_SIDES`
    sides (a sleeve or toploader), else None. `outer_quad` in OpenCV pixels, any corner order around the card."""
    reduced = reduced or Reduced.of(image)
    quad = reduced.to_reduced(np.asarray(outer_quad, float))
    sides_px = np.linalg.norm(quad - np.roll(quad, -1, axis=0), axis=1)
    short, long = sorted((sides_px[0] + sides_px[2], sides_px[1] + sides_px[3]))
    px_per_mm = float((short / spec.width_mm + long / spec.height_mm) / 4)
    grey = _without_padding(reduced.image.mean(axis=2))  # a holder's edge is a change of brightness
    found = {}
    for name, (p0, p1) in quad_side_ends(quad).items():
        distance = _parallel_edge_outside(grey, p0, p1, quad.mean(axis=0), px_per_mm)
        if distance is not None:
            found[name] = distance
    if len(found) < MIN_SLEEVE_SIDES:
        return None
    where = ", ".join(f"{name} {mm:.1f} mm" for name, mm in found.items())
    return f"suspected sleeve edge: a straight edge parallel to the card's lies just outside it ({where})"


def _without_padding(image: np.ndarray) -> np.ndarray:
    """The image with a scanner's black padding along its edges made NaN: the padding's edge is straight too."""
    top, bottom, left, right = content_box(image)
    out = image.astype(np.float32)
    out[:top], out[bottom:], out[:, :left], out[:, right:] = np.nan, np.nan, np.nan, np.nan
    return out


def _parallel_edge_outside(
    image: np.ndarray, p0: np.ndarray, p1: np.ndarray, inside: np.ndarray, px_per_mm: float
) -> float | None:
    """How far outside the card's edge p0-p1 a straight edge parallel to it runs (mm), or None."""
    edge = line_through(p0, p1)
    outward = -edge[:2] if signed_distance(edge, inside) > 0 else edge[:2]
    reach = 3.5 * _SIGMA_PX + 1.0  # the smoothing's: the gradient is defined over the whole search
    profiles = sample_profiles(
        image,
        p0,
        p1,
        normal=outward,
        sampling="remap",
        offset_range=(SLEEVE_NEAR_MM * px_per_mm - reach, SLEEVE_FAR_MM * px_per_mm + reach),
        offset_step=1.0,
        spacing=3.0,
        margin=4.0 * px_per_mm,  # the card's rounded corners, and the holder's
    )
    if len(profiles.origins) < 10:
        return None
    hits = locate_edges(
        profiles.values,
        profiles.offsets,
        sigma_px=_SIGMA_PX,
        min_snr=4.0,
        min_gradient=_MIN_CONTRAST / (np.sqrt(2 * np.pi) * np.hypot(_SIGMA_PX, 1.0)),
        search_range=(SLEEVE_NEAR_MM * px_per_mm, SLEEVE_FAR_MM * px_per_mm),
    )
    if np.count_nonzero(hits.found) < _MIN_SHARE * len(hits.offsets):
        return None
    fit = fit_line_robust(profiles.points_at(hits.offsets), inlier_threshold_px=1.0, iterations=6, ransac_trials=64)
    if fit.count < _MIN_SHARE * len(hits.offsets) or angle_between_deg(fit.line, edge) > _MAX_ANGLE_DEG:
        return None
    return float(np.median(np.abs(signed_distance(edge, profiles.points_at(hits.offsets)[fit.inliers]))) / px_per_mm)
