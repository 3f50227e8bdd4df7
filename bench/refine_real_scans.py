"""Box-to-polygon refinement on the real scans: are the refined quads tighter than the box labels, and on edges?

    .venv/bin/python bench/refine_real_scans.py [--scans ../shared/data/real-scans]

Prints the figures, writes them as a markdown snippet (bench/results/refine_real_scans.md) and writes overlays of
six scans into docs/img/refine/ (box labels in red, refined quads in magenta). The scans are only read.

The independent checks do not reuse the refinement's own choice of edge: they sample the plain gradient magnitude
of the image along each refined line and along each box side, and they look again for a colour edge (any clear
gradient maximum) within 1 px of each refined line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from cardmetry.data.formats.yolo import from_yolo_line
from cardmetry.data.images import load_image
from cardmetry.data.instances import Instance, label_to_cv
from cardmetry.data.refine import SIDES, RefinedQuad, refine_boxes
from cardmetry.geometry.edges import bilinear_sample, locate_edges, sample_profiles, segment_positions
from cardmetry.geometry.lines import polygon_area

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SCANS = REPO.parent / "shared" / "data" / "real-scans"
SCAN_DPI = 600
PX_PER_MM = SCAN_DPI / 25.4
CHECK_MARGIN_MM = 4.0  # off the rounded corners, as the refinement itself
OVERLAY_SCANS = ("Test001", "Test011", "Test029", "Test043", "Test058", "Test061")
BOX_BGR, QUAD_BGR = (40, 40, 230), (255, 0, 255)  # red and magenta: rare on cards and on the dark lid


@dataclass(frozen=True)
class SideRecord:
    """The figures of one refined side."""

    where: str  # scan and side
    shift_px: float
    rms_px: float
    own_within_1px: float  # the refinement's own edge samples within 1 px of its line
    gradient_ratio: float  # mean gradient magnitude along the refined side over that along the box side
    edge_at_line: float  # profiles with an independently found colour edge within 1 px of the line


@dataclass
class RoleFigures:
    """Everything measured for one role over all scans."""

    boxes: int = 0
    refusals: list[str] = field(default_factory=list)
    area_ratios: list[float] = field(default_factory=list)
    sides: list[SideRecord] = field(default_factory=list)

    def column(self, name: str) -> np.ndarray:
        return np.array([getattr(record, name) for record in self.sides], float)


def read_scan(scans: Path, name: str) -> tuple[np.ndarray, list[Instance]]:
    image = load_image(scans / "images" / f"{name}.jpg")
    height, width = image.shape[:2]
    lines = (scans / "labels" / f"{name}.txt").read_text().splitlines()
    return image, [from_yolo_line(line, width, height) for line in lines if line.strip()]


def gradient_magnitude(image: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3) / 8
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3) / 8
    return np.hypot(gx, gy)


def side_segments(quad_label: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    tl, tr, br, bl = label_to_cv(quad_label)
    return {"top": (tl, tr), "right": (tr, br), "bottom": (br, bl), "left": (bl, tl)}


def mean_along(values: np.ndarray, p0: np.ndarray, p1: np.ndarray, margin_px: float) -> float:
    points = segment_positions(p0, p1, spacing=1.0, margin=margin_px)
    return float(np.nanmean(bilinear_sample(values, points)))


def share_with_edge_at(image: np.ndarray, p0: np.ndarray, p1: np.ndarray, margin_px: float) -> float:
    """Share of profiles across the segment with a colour edge (a clear gradient maximum) within 1 px of it."""
    # The profiles reach well past the 1 px searched so that the smoothed gradient is defined there.
    profiles = sample_profiles(image, p0, p1, offset_range=(-8.0, 8.0), offset_step=0.25, margin=margin_px)
    hits = locate_edges(profiles.values, profiles.offsets, search_range=(-1.0, 1.0), min_gradient=3.0)
    return float(np.mean(hits.found))


def measure(image: np.ndarray, name: str, refined: RefinedQuad, magnitude: np.ndarray, figures: RoleFigures) -> None:
    assert refined.quad is not None
    box = refined.box.polygon
    figures.area_ratios.append(polygon_area(refined.quad) / polygon_area(box))
    margin = CHECK_MARGIN_MM * PX_PER_MM
    refined_sides, box_sides = side_segments(refined.quad), side_segments(box)
    for side in SIDES:
        fit = refined.sides[side]
        along_refined = mean_along(magnitude, *refined_sides[side], margin)
        along_box = mean_along(magnitude, *box_sides[side], margin)
        figures.sides.append(
            SideRecord(
                f"{name} {side}",
                fit.shift_px,
                fit.rms_px,
                fit.within_1px,
                along_refined / max(along_box, 1e-6),
                share_with_edge_at(image, *refined_sides[side], margin),
            )
        )


def draw_quad(canvas: np.ndarray, quad_label: np.ndarray, origin: np.ndarray, scale: float, colour: tuple) -> None:
    """Draw a label-convention polygon onto a crop scaled by `scale` (pixel edges map to pixel edges)."""
    points = (np.asarray(quad_label) - origin) * scale
    cv2.polylines(canvas, [np.round(points * 16).astype(np.int32)], True, colour, 1, cv2.LINE_AA, shift=4)


def overlay_views(image: np.ndarray, results: list[RefinedQuad]) -> tuple[np.ndarray, np.ndarray | None]:
    """A whole-card view and a sheet of full-resolution corner and mid-side crops (nearest neighbour zoom)."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    scale_card = 460 / image.shape[0]  # keeps the PNG under 300 KB
    card = cv2.resize(bgr, None, fx=scale_card, fy=scale_card, interpolation=cv2.INTER_AREA)
    crops = []
    for refined in results:
        draw_quad(card, refined.box.polygon, np.zeros(2), scale_card, BOX_BGR)
        if refined.quad is not None:
            draw_quad(card, refined.quad, np.zeros(2), scale_card, QUAD_BGR)
            crops.extend(_crops(bgr, refined.box.polygon, refined.quad, refined.role))
    sheet = _sheet(crops, columns=4) if crops else None
    return card, sheet


def _crops(bgr: np.ndarray, box: np.ndarray, quad: np.ndarray, role: str, half: int = 24, zoom: int = 5) -> list:
    tl, tr, br, bl = quad
    centres = [tl, (tl + tr) / 2, tr, (tr + br) / 2, br, (br + bl) / 2, bl, (bl + tl) / 2]
    out = []
    for centre in centres:
        x0, y0 = (np.round(centre) - half).astype(int)
        x0 = int(np.clip(x0, 0, bgr.shape[1] - 2 * half))
        y0 = int(np.clip(y0, 0, bgr.shape[0] - 2 * half))
        crop = bgr[y0 : y0 + 2 * half, x0 : x0 + 2 * half]
        crop = cv2.resize(crop, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
        origin = np.array([x0, y0], float)
        draw_quad(crop, box, origin, zoom, BOX_BGR)
        draw_quad(crop, quad, origin, zoom, QUAD_BGR)
        out.append(crop)
    return out


def _sheet(crops: list[np.ndarray], columns: int) -> np.ndarray:
    rows = [np.concatenate(crops[i : i + columns], axis=1) for i in range(0, len(crops), columns)]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0))) for r in rows]
    return np.concatenate(rows, axis=0)


def summarise(figures: dict[str, RoleFigures], seconds: list[float], command: str) -> str:
    outer_shift = figures["outer"].column("shift_px")
    lines = [
        "### Box-to-polygon refinement on the 47 real scans",
        "",
        f"Command: `{command}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, CPU only; Python {platform.python_version()}; "
        f"{dt.date.today().isoformat()}  ",
        f"Time per scan (outer and graphic): median {np.median(seconds):.2f} s, max {np.max(seconds):.2f} s.",
        "",
        "Shift is the mean distance from a box side to its refined edge, positive inward; mm at the scans'"
        f" {SCAN_DPI} dpi. The gradient ratio compares the mean Sobel gradient magnitude along each refined side"
        " with that along its box side (4 mm clear of the corners). The last two rows check that the refined"
        " lines sit on edges: the share of the refinement's own edge samples within 1 px of its line, and the"
        " share of profiles across the line in which a colour edge, found again without the refinement's rules"
        " (any gradient maximum), lies within 1 px of it.",
        "",
        f"The outer boxes are not 0.4 mm outside the card edges, as first thought: 90 % of their sides lie within"
        f" {np.percentile(outer_shift, 5):.1f} to {np.percentile(outer_shift, 95):.1f} px"
        f" ({np.percentile(outer_shift, 5) / PX_PER_MM:.2f} to {np.percentile(outer_shift, 95) / PX_PER_MM:.2f} mm)"
        f" of the edge, and {np.mean(outer_shift < 0):.0%} of them cut into the card. Refinement mostly straightens"
        " them onto the"
        " edge and follows the card's tilt. Overlays of six scans (box in red, refined quad in magenta, corner and"
        " mid-side crops at 5x) are in docs/img/refine/.",
        "",
        "| figure | outer | graphic |",
        "| --- | --- | --- |",
    ]
    rows: list[tuple[str, Callable[[RoleFigures], str]]] = [
        ("boxes refined", lambda f: f"{f.boxes - len(f.refusals)} / {f.boxes}"),
        ("side shift px, median (mean)", lambda f: _pair(f.column("shift_px"), 1)),
        ("side shift mm, median (mean)", lambda f: _pair(f.column("shift_px") / PX_PER_MM, 3)),
        ("side shift px, 5th-95th percentile", lambda f: _range(f.column("shift_px"))),
        ("line-fit RMS px, median / p95", lambda f: _median_p95(f.column("rms_px"))),
        ("area refined / box, median (min)", lambda f: _median_min(f.area_ratios)),
        ("gradient along refined / along box, median (min)", lambda f: _median_min(f.column("gradient_ratio"))),
        ("own edge samples within 1 px of the line, median (min)", lambda f: _median_min(f.column("own_within_1px"))),
        (
            "profiles with an edge within 1 px of the line, median (min)",
            lambda f: _median_min(f.column("edge_at_line")),
        ),
    ]
    for title, cell in rows:
        lines.append(f"| {title} | {cell(figures['outer'])} | {cell(figures['graphic'])} |")
    for role, fig in figures.items():
        weakest = sorted(fig.sides, key=lambda record: record.edge_at_line)[:5]
        lines += ["", f"Refined {role} sides with the fewest independent edge hits at the line:", ""]
        lines += [
            f"- {r.where}: {r.edge_at_line:.2f} (shift {r.shift_px:+.1f} px, RMS {r.rms_px:.2f} px, "
            f"gradient ratio {r.gradient_ratio:.2f})"
            for r in weakest
        ]
    for role, fig in figures.items():
        if fig.refusals:
            lines += ["", f"Refused ({role}):", ""] + [f"- {reason}" for reason in fig.refusals]
    return "\n".join(lines) + "\n"


def _pair(values: list[float] | np.ndarray, digits: int) -> str:
    v = np.asarray(values, float)
    return f"{np.median(v):.{digits}f} ({np.mean(v):.{digits}f})" if v.size else "-"


def _range(values: list[float]) -> str:
    v = np.asarray(values, float)
    return f"{np.percentile(v, 5):.1f} to {np.percentile(v, 95):.1f}" if v.size else "-"


def _median_p95(values: list[float]) -> str:
    v = np.asarray(values, float)
    return f"{np.median(v):.2f} / {np.percentile(v, 95):.2f}" if v.size else "-"


def _median_min(values: list[float]) -> str:
    v = np.asarray(values, float)
    return f"{np.median(v):.2f} ({np.min(v):.2f})" if v.size else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=Path, default=DEFAULT_SCANS)
    parser.add_argument("--markdown", type=Path, default=REPO / "bench" / "results" / "refine_real_scans.md")
    parser.add_argument("--overlays", type=Path, default=REPO / "docs" / "img" / "refine")
    args = parser.parse_args()

    names = sorted(p.stem for p in (args.scans / "images").glob("*.jpg"))
    figures = {"outer": RoleFigures(), "graphic": RoleFigures()}
    seconds: list[float] = []
    args.overlays.mkdir(parents=True, exist_ok=True)
    for name in names:
        image, boxes = read_scan(args.scans, name)
        start = time.perf_counter()
        results = [r for r in refine_boxes(image, boxes) if r is not None]
        seconds.append(time.perf_counter() - start)
        magnitude = gradient_magnitude(image)
        for refined in results:
            role_figures = figures[refined.role]
            role_figures.boxes += 1
            if refined.ok:
                measure(image, name, refined, magnitude, role_figures)
            else:
                role_figures.refusals.append(f"{name}: {refined.reason}")
                print(f"{name} {refined.role}: refused: {refined.reason}")
        if name in OVERLAY_SCANS:
            card, sheet = overlay_views(image, results)
            cv2.imwrite(str(args.overlays / f"{name}_card.png"), card, [cv2.IMWRITE_PNG_COMPRESSION, 9])
            if sheet is not None:
                cv2.imwrite(str(args.overlays / f"{name}_corners.png"), sheet, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    command = ".venv/bin/python bench/refine_real_scans.py"
    text = summarise(figures, seconds, command)
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
