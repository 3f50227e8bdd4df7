"""The overlay: a picture of what was measured, drawn on the card image, so a person can check it by eye.

Both fitted borders are drawn as thin anti-aliased lines at sub-pixel positions (OpenCV's `shift` bits), so when
zoomed in they can be seen to sit on the edges they were fitted to. Each of the 24 stations gets a tick from its
foot on the outer edge to the graphic edge, computed in the rectified card frame exactly as the widths are
(CONTRACT.md), and its width in mm; the worst station of each axis is drawn in red. A header band above the image
carries the centering, grade ceilings and quality flags. A refusal gets the band with its reason and nothing that
could be read as a measurement.

The image keeps its pixel coordinates: the band is stacked on top, so image pixel (x, y) is overlay pixel
(x, y + band height), with band height = overlay rows - image rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cardmetry.geometry.homography import apply_homography, image_to_card
from cardmetry.geometry.stations import station_ends
from cardmetry.measure.files import as_rgb
from cardmetry.measure.result import Measurement, Refusal

# Colours are RGB: the overlay is an RGB image like its input.
OUTER_COLOUR = (0, 230, 255)  # cyan: the card stock's edge
GRAPHIC_COLOUR = (255, 0, 220)  # magenta: the printed frame's edge
TICK_COLOUR = (255, 220, 0)  # yellow: a station
WORST_COLOUR = (255, 40, 40)  # red: the worst station of an axis
TEXT_COLOUR = (255, 255, 255)
FLAG_COLOUR = (255, 190, 60)
BAND_COLOUR = (28, 28, 28)
REFUSED_BAND_COLOUR = (110, 0, 0)

SHIFT = 4  # fractional bits for cv2 drawing: coordinates to 1/16 px
FONT = cv2.FONT_HERSHEY_SIMPLEX
_FONT_HEIGHT_AT_SCALE_1 = 22.0  # px, cap height plus a little, of FONT at fontScale 1


@dataclass(frozen=True)
class Style:
    """Sizes that follow the image, so a 2100 px scan and a 770 px render both get legible text and thin lines."""

    font_scale: float
    text_thickness: int
    text_height: int
    line_thickness: int
    pad: int

    @staticmethod
    def for_image(shape: tuple[int, ...]) -> Style:
        long_side = max(shape[0], shape[1])
        # About 1 % of the long side: 10 px on a 200 dpi card, 22 px on a 600 dpi scan.
        text_height = max(10, round(0.0105 * long_side))
        scale = text_height / _FONT_HEIGHT_AT_SCALE_1
        return Style(
            font_scale=scale,
            text_thickness=max(1, round(scale * 1.6)),
            text_height=text_height,
            # Edge lines stay one pixel wide up to large images: wider lines would hide the edge they mark.
            line_thickness=1 if long_side < 4000 else 2,
            pad=max(2, text_height // 4),
        )


def draw_overlay(image: np.ndarray, result: Measurement | Refusal) -> np.ndarray:
    """The overlay for a measurement or a refusal: a new RGB uint8 image, the input left untouched."""
    rgb = as_rgb(image)
    style = Style.for_image(rgb.shape)
    if isinstance(result, Refusal):
        canvas = rgb.copy()
        _draw_refused_mark(canvas, style)
        return _with_band(canvas, _refusal_header(result), style, REFUSED_BAND_COLOUR)
    canvas = rgb.copy()
    _draw_quad(canvas, result.outer_quad_px, OUTER_COLOUR, style.line_thickness)
    _draw_quad(canvas, result.graphic_quad_px, GRAPHIC_COLOUR, style.line_thickness)
    _draw_stations(canvas, result, style)
    return _with_band(canvas, _measurement_header(result), style, BAND_COLOUR, legend=True)


# --- stations -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StationMark:
    """Where a station is drawn: its foot on the outer edge and its point on the graphic edge, in image px."""

    id: str
    outer_px: np.ndarray
    graphic_px: np.ndarray
    border_mm: float
    worst: bool


def station_marks(result: Measurement) -> list[StationMark]:
    """The 24 stations in image pixels, placed in the rectified card frame as the widths were measured."""
    spec = result.spec
    to_image = np.linalg.inv(image_to_card(result.outer_quad_px, spec))
    worst = _worst_ids(result.centering)
    widths = {p.id: p.border_mm for p in result.points}
    marks = []
    for station in spec.stations():
        border = widths[station.id]
        graphic_mm, outer_mm = station_ends(station, border, spec)
        g_px, o_px = apply_homography(to_image, np.array([graphic_mm, outer_mm]))
        marks.append(StationMark(station.id, o_px, g_px, border, station.id in worst))
    return marks


def _worst_ids(centering: dict[str, object]) -> set[str]:
    """The station ids of each axis's worst pair: (Lk, Rk) and (Tk, Bk)."""
    ids: set[str] = set()
    for key, pair in (("worst_left_right", "LR"), ("worst_top_bottom", "TB")):
        worst = centering.get(key)
        if isinstance(worst, dict) and "station" in worst:
            ids.update(f"{side}{worst['station']}" for side in pair)
    return ids


def _draw_stations(canvas: np.ndarray, result: Measurement, style: Style) -> None:
    height, width = canvas.shape[:2]
    for mark in station_marks(result):
        colour = WORST_COLOUR if mark.worst else TICK_COLOUR
        thickness = style.line_thickness * (2 if mark.worst else 1)
        _line(canvas, mark.outer_px, mark.graphic_px, colour, thickness)
        if mark.worst:
            radius = max(3.0, style.text_height / 3)
            cv2.circle(canvas, _fixed(mark.graphic_px), round(radius * (1 << SHIFT)), colour, 1, cv2.LINE_AA, SHIFT)
        text = f"{mark.id} {mark.border_mm:.3f}"
        box = _text_box(text, style)
        centre = _label_centre(mark, box, style, (width, height))
        _label(canvas, text, centre, style, WORST_COLOUR if mark.worst else TEXT_COLOUR)


def _label_centre(mark: StationMark, box: tuple[int, int], style: Style, size: tuple[int, int]) -> tuple[float, float]:
    """Outside the card beyond the station's foot when the image has room there, else inside beyond the graphic
    edge: either way off the border itself, so the label never hides the edges it describes."""
    direction = mark.outer_px - mark.graphic_px
    normal = direction / max(float(np.linalg.norm(direction)), 1e-9)  # outward
    # How far the box reaches along the normal from its centre.
    reach = abs(normal[0]) * box[0] / 2 + abs(normal[1]) * box[1] / 2
    gap = style.pad * 2
    outside = mark.outer_px + normal * (gap + reach)
    if _fits(outside, box, size):
        return float(outside[0]), float(outside[1])
    inside = mark.graphic_px - normal * (gap + reach)
    return float(inside[0]), float(inside[1])


def _fits(centre: np.ndarray, box: tuple[int, int], size: tuple[int, int]) -> bool:
    x0, y0 = centre[0] - box[0] / 2, centre[1] - box[1] / 2
    return x0 >= 0 and y0 >= 0 and x0 + box[0] <= size[0] and y0 + box[1] <= size[1]


# --- drawing primitives ---------------------------------------------------------------------------------------


def _fixed(point: np.ndarray) -> tuple[int, int]:
    """A point in OpenCV's fixed-point form for `shift` bits (pixel centres at integers, as the quads are)."""
    return round(float(point[0]) * (1 << SHIFT)), round(float(point[1]) * (1 << SHIFT))


def _line(canvas: np.ndarray, p0: np.ndarray, p1: np.ndarray, colour: tuple[int, int, int], thickness: int) -> None:
    cv2.line(canvas, _fixed(p0), _fixed(p1), colour, thickness, cv2.LINE_AA, SHIFT)


def _draw_quad(canvas: np.ndarray, quad: np.ndarray, colour: tuple[int, int, int], thickness: int) -> None:
    """The four fitted edges, corner to corner: the corners are the fitted lines' intersections."""
    quad = np.asarray(quad, float)
    for i in range(4):
        _line(canvas, quad[i], quad[(i + 1) % 4], colour, thickness)


def _text_box(text: str, style: Style) -> tuple[int, int]:
    """Width and height of a label with its padding."""
    (w, h), baseline = cv2.getTextSize(text, FONT, style.font_scale, style.text_thickness)
    return w + 2 * style.pad, h + baseline + 2 * style.pad


def _label(
    canvas: np.ndarray, text: str, centre: tuple[float, float], style: Style, colour: tuple[int, int, int]
) -> None:
    """Text on a translucent dark box, legible on any card art."""
    text = _ascii(text)
    (w, h), baseline = cv2.getTextSize(text, FONT, style.font_scale, style.text_thickness)
    bw, bh = w + 2 * style.pad, h + baseline + 2 * style.pad
    x0, y0 = round(centre[0] - bw / 2), round(centre[1] - bh / 2)
    _shade(canvas, x0, y0, x0 + bw, y0 + bh)
    origin = (x0 + style.pad, y0 + style.pad + h)
    cv2.putText(canvas, text, origin, FONT, style.font_scale, colour, style.text_thickness, cv2.LINE_AA)


def _shade(canvas: np.ndarray, x0: int, y0: int, x1: int, y1: int, alpha: float = 0.6) -> None:
    height, width = canvas.shape[:2]
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    if x1 <= x0 or y1 <= y0:
        return
    region = canvas[y0:y1, x0:x1].astype(np.float32)
    canvas[y0:y1, x0:x1] = np.round(region * (1 - alpha)).astype(np.uint8)


def _draw_refused_mark(canvas: np.ndarray, style: Style) -> None:
    """'NOT MEASURED' across the middle of the image: a refused overlay must never pass for a measured one."""
    height, width = canvas.shape[:2]
    big = Style(style.font_scale * 2.5, style.text_thickness * 2, style.text_height * 2, 1, style.pad * 2)
    _label(canvas, "NOT MEASURED", (width / 2, height / 2), big, WORST_COLOUR)


# --- the header band ------------------------------------------------------------------------------------------

HeaderLine = tuple[str, tuple[int, int, int]]


def _measurement_header(result: Measurement) -> list[HeaderLine]:
    c = result.centering
    lr, tb = c["left_right"], c["top_bottom"]
    wlr, wtb = c["worst_left_right"], c["worst_top_bottom"]
    lines: list[HeaderLine] = [
        (
            f"{result.image or 'card'} ({result.side}, {result.spec.name} card, {result.px_per_mm:.2f} px/mm)",
            TEXT_COLOUR,
        ),
        (
            f"Centering L/R {lr[0]:.1f}/{lr[1]:.1f}, worst L{wlr['station']}/R{wlr['station']} "
            f"{wlr['ratio'][0]:.1f}/{wlr['ratio'][1]:.1f}",
            TEXT_COLOUR,
        ),
        (
            f"Centering T/B {tb[0]:.1f}/{tb[1]:.1f}, worst T{wtb['station']}/B{wtb['station']} "
            f"{wtb['ratio'][0]:.1f}/{wtb['ratio'][1]:.1f}",
            TEXT_COLOUR,
        ),
        (f"Skew of the printed frame {result.skew_deg.get('frame', 0.0):+.2f} deg", TEXT_COLOUR),
    ]
    grades = _grades_line(result.grades)
    if grades:
        lines.append((grades, TEXT_COLOUR))
    lines.extend((f"flag: {flag}", FLAG_COLOUR) for flag in result.flags)
    return lines


def _grades_line(grades: dict[str, object]) -> str:
    """One line of ceilings; a null ceiling is an unsourced table (CONTRACT.md), an entry of another shape is left
    to the report rather than guessed at here."""
    parts = []
    for grader, entry in grades.items():
        if not isinstance(entry, dict) or "ceiling" not in entry:
            continue
        ceiling = entry["ceiling"]
        if ceiling is not None:
            parts.append(f"{grader.upper()} max {ceiling}")
        else:
            parts.append(f"{grader.upper()} {'no ceiling' if entry.get('sourced') is True else 'unsourced'}")
    return ("Grade ceilings from centering: " + ", ".join(parts)) if parts else ""


def _refusal_header(result: Refusal) -> list[HeaderLine]:
    lines: list[HeaderLine] = [
        (f"{result.image or 'card'} ({result.side}): NOT MEASURED", TEXT_COLOUR),
        (f"reason: {result.reason}", TEXT_COLOUR),
    ]
    lines.extend((f"flag: {flag}", FLAG_COLOUR) for flag in result.flags)
    return lines


def _with_band(
    canvas: np.ndarray, lines: list[HeaderLine], style: Style, background: tuple[int, int, int], *, legend: bool = False
) -> np.ndarray:
    """The header lines, wrapped to the image's width, in a band stacked above the image."""
    width = canvas.shape[1]
    usable = width - 2 * style.pad * 2
    wrapped = [(piece, colour) for text, colour in lines for piece in _wrap(_ascii(text), style, usable)]
    line_height = round(style.text_height * 1.5)
    rows = len(wrapped) + (1 if legend else 0)
    band = np.empty((rows * line_height + 2 * style.pad, width, 3), np.uint8)
    band[:] = background
    y = style.pad
    for text, colour in wrapped:
        origin = (style.pad * 2, y + round(line_height * 0.75))
        cv2.putText(band, text, origin, FONT, style.font_scale, colour, style.text_thickness, cv2.LINE_AA)
        y += line_height
    if legend:
        _draw_legend(band, y, line_height, style)
    return np.vstack([band, canvas])


def _draw_legend(band: np.ndarray, y: int, line_height: int, style: Style) -> None:
    x = style.pad * 2
    mid = y + line_height // 2
    swatch = style.text_height * 2
    for colour, text in (
        (OUTER_COLOUR, "card edge"),
        (GRAPHIC_COLOUR, "printed frame"),
        (TICK_COLOUR, "station (mm)"),
        (WORST_COLOUR, "worst station"),
    ):
        (w, _), _ = cv2.getTextSize(text, FONT, style.font_scale, style.text_thickness)
        if x + swatch + style.pad + w > band.shape[1]:
            break
        cv2.line(band, (x, mid), (x + swatch, mid), colour, max(2, style.text_thickness), cv2.LINE_AA)
        x += swatch + style.pad
        origin = (x, y + round(line_height * 0.75))
        cv2.putText(band, text, origin, FONT, style.font_scale, TEXT_COLOUR, style.text_thickness, cv2.LINE_AA)
        x += w + style.pad * 4


def _wrap(text: str, style: Style, max_width: int) -> list[str]:
    """Greedy word wrap by rendered width; a word wider than the line is cut by characters."""

    def fits(candidate: str) -> bool:
        return cv2.getTextSize(candidate, FONT, style.font_scale, style.text_thickness)[0][0] <= max_width

    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if fits(candidate):
            current = candidate
            continue
        if current:
            lines.append(current)
        while not fits(word) and len(word) > 1:
            cut = len(word) - 1
            while cut > 1 and not fits(word[:cut]):
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        current = word
    if current:
        lines.append(current)
    return lines or [""]


def _ascii(text: str) -> str:
    """Hershey fonts draw ASCII only: anything else would come out as '?' anyway, so say so explicitly."""
    return text.encode("ascii", "replace").decode("ascii")
