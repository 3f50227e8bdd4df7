"""The measurement on the 47 real scans: every scan measures or refuses with a reason; repeatability per station.

    .venv/bin/python bench/measure_real_scans.py [--scans ../shared/data/real-scans] [--perturb 8]

For each scan: the classical path (`measure_image`, no models), its time, its flags or its reason; the outer
quad's sides against the label boxes (which lie within about 0.16 mm of the card edges: a sanity check, not
sub-pixel truth); then `rr --perturb N`: the scan measured again under N simulated rescans (rotation, rescale,
perspective, JPEG) and the standard deviation per station. Writes bench/results/measure_real_scans.md and, for six
scans, the overlay and a sheet of 6x crops where the fitted lines cross the middle of each edge into
docs/img/measure/. The scans are only read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
from pathlib import Path

import cv2
import numpy as np
from timing import timed  # bench/timing.py: scripts run from bench/ import it directly

from cardmetry.data.formats.yolo import from_yolo_line
from cardmetry.data.images import load_image
from cardmetry.data.instances import label_to_cv
from cardmetry.geometry.lines import QUAD_SIDES, line_through, signed_distance
from cardmetry.geometry.specs import STANDARD
from cardmetry.measure.files import write_png
from cardmetry.measure.overlay import draw_overlay
from cardmetry.measure.pipeline import measure_image
from cardmetry.measure.result import Measurement, Refusal
from cardmetry.measure.rr import perturb, repeatability, sample_perturbations

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SCANS = REPO.parent / "shared" / "data" / "real-scans"
RESULTS = REPO / "bench" / "results" / "measure_real_scans.md"
IMAGES = REPO / "docs" / "img" / "measure"
OVERLAY_SCANS = ("Test001", "Test003", "Test029", "Test037", "Test054", "Test058")
PX_PER_MM = 600 / 25.4
OUTER_BGR, GRAPHIC_BGR = (255, 0, 255), (0, 200, 255)  # magenta and amber: rare on cards and on the dark lid


def label_box(scans: Path, name: str, width: int, height: int) -> np.ndarray | None:
    """The class-0 (outer) label box as an OpenCV-pixel quad, or None."""
    for line in (scans / "labels" / f"{name}.txt").read_text().splitlines():
        if line.strip():
            instance = from_yolo_line(line, width, height)
            if instance.class_id == 0:
                return label_to_cv(instance.polygon)
    return None


def box_offsets_mm(result: Measurement, box: np.ndarray) -> list[float]:
    """Distance from the middle of each fitted outer side to the nearest side of the label box, in mm."""
    box_sides = [line_through(box[k], box[(k + 1) % 4]) for k in range(4)]
    offsets = []
    for i, j in QUAD_SIDES.values():
        middle = ((result.outer_quad_px[i] + result.outer_quad_px[j]) / 2)[None]
        offsets.append(min(abs(float(signed_distance(line, middle)[0])) for line in box_sides) / PX_PER_MM)
    return offsets


def crops_sheet(image: np.ndarray, result: Measurement, half: int = 20, zoom: int = 6) -> np.ndarray:
    """6x crops (nearest neighbour, so pixels stay pixels) at the middle of each outer and graphic edge, with the
    fitted lines drawn at sub-pixel precision on the zoomed crop itself."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    crops = []
    for quad in (result.outer_quad_px, result.graphic_quad_px):
        for i, j in QUAD_SIDES.values():
            centre = (quad[i] + quad[j]) / 2
            x0, y0 = (np.round(centre) - half).astype(int)
            window = bgr[y0 : y0 + 2 * half, x0 : x0 + 2 * half]
            crop = cv2.resize(window, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
            for q, colour in ((result.outer_quad_px, OUTER_BGR), (result.graphic_quad_px, GRAPHIC_BGR)):
                # Pixel centre x maps to (x - x0 + 0.5) * zoom in the zoomed crop.
                points = ((q - [x0, y0] + 0.5) * zoom * 16).round().astype(np.int32)
                cv2.polylines(crop, [points], True, colour, 1, cv2.LINE_AA, shift=4)
            crops.append(crop)
    top, bottom = np.concatenate(crops[:4], axis=1), np.concatenate(crops[4:], axis=1)
    return np.concatenate([top, np.full((4, top.shape[1], 3), 255, np.uint8), bottom], axis=0)


def write_overlays(image: np.ndarray, result: Measurement | Refusal, name: str) -> None:
    """The overlay at 1000 px tall as JPEG (the whole card, to look at), and the 6x edge crops as PNG (to check
    that the lines sit on the edges)."""
    overlay = draw_overlay(image, result)
    scale = 1000 / overlay.shape[0]
    small = cv2.resize(overlay, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(IMAGES / f"{name}.jpg"), cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
    if isinstance(result, Measurement):
        write_png(IMAGES / f"{name}-edges.png", cv2.cvtColor(crops_sheet(image, result), cv2.COLOR_BGR2RGB))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scans", type=Path, default=DEFAULT_SCANS)
    parser.add_argument("--perturb", type=int, default=8)
    args = parser.parse_args()
    names = sorted(p.stem for p in (args.scans / "images").glob("*.jpg"))
    rescans = sample_perturbations(args.perturb, seed=0)
    rows, refusals, flags, offsets, spreads, timings = [], [], [], [], [], []
    IMAGES.mkdir(parents=True, exist_ok=True)
    for old in [*IMAGES.glob("Test*.jpg"), *IMAGES.glob("Test*-edges.png")]:
        old.unlink()  # a scan no longer in the list, or no longer measured, leaves no stale picture
    for name in names:
        image = load_image(args.scans / "images" / f"{name}.jpg")
        result, ms = timed(lambda: measure_image(image, STANDARD, name=name))  # noqa: B023
        timings.append(ms)
        if name in OVERLAY_SCANS:
            write_overlays(image, result, name)
        if not isinstance(result, Measurement):
            refusals.append(f"- {name}: {result.reason}")
            rows.append(f"| {name} | refused | | | | |")
            continue
        flags += [f"- {name}: {flag}" for flag in result.flags]
        box = label_box(args.scans, name, image.shape[1], image.shape[0])
        if box is not None:
            offsets += box_offsets_mm(result, box)
        repeats = [result] + [measure_image(perturb(image, p), STANDARD, name=name) for p in rescans]
        spread = repeatability(repeats) if sum(isinstance(r, Measurement) for r in repeats) >= 2 else None
        if spread is not None:
            spreads.append(spread)
        lr, tb = result.centering["left_right"], result.centering["top_bottom"]
        rows.append(
            f"| {name} | {lr[0]:.1f}/{lr[1]:.1f}, {tb[0]:.1f}/{tb[1]:.1f} | {timings[-1]:.0f} | "
            + (
                f"{spread.median_std_mm:.4f} | {spread.worst_station.id} {spread.worst_station.std_mm:.4f} | "
                f"{len(spread.refused)} |"
                if spread
                else "- | - | all |"
            )
        )
        print(rows[-1], flush=True)
    measured = len(names) - len(refusals)
    median_stds = sorted(s.median_std_mm for s in spreads)
    text = "\n".join(
        [
            "### The measurement on the 47 real scans",
            "",
            f"Command: `.venv/bin/python bench/measure_real_scans.py --perturb {args.perturb}`  ",
            f"Machine: {platform.machine()}, {os.cpu_count()} cores, CPU only; Python {platform.python_version()}; "
            f"{dt.date.today().isoformat()}",
            "",
            f"- Measured {measured} / {len(names)}; refused {len(refusals)}, each with its reason (below).",
            f"- Time per scan (classical path, {image.shape[1]} x {image.shape[0]} px, best of 3 runs): median "
            f"{np.median(timings):.0f} ms, max {np.max(timings):.0f} ms.",
            f"- Outer sides against the label boxes: median {np.median(offsets):.3f} mm, 90th percentile "
            f"{np.percentile(offsets, 90):.3f} mm (the boxes themselves are within about 0.16 mm of the edges)."
            if offsets
            else "- No outer side to compare with the label boxes.",
            f"- Repeatability under {args.perturb} perturbations: per card, the median over its 24 stations of the "
            f"std; over cards, median {np.median(median_stds):.4f} mm, 90th percentile "
            f"{np.percentile(median_stds, 90):.4f} mm, worst {median_stds[-1]:.4f} mm. Per card, the largest "
            f"station std: median over cards {np.median([s.worst_station.std_mm for s in spreads]):.4f} mm. "
            f"Rescans refused: {sum(len(s.refused) for s in spreads)} of {len(spreads) * args.perturb}."
            if median_stds
            else "- No card measured twice.",
            "",
            "| scan | centering L/R, T/B | ms | median station std mm | worst station std mm | refused repeats |",
            "| --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
            "Refusals:",
            "",
            *refusals,
            "",
            "Flags:",
            "",
            *flags,
            "",
        ]
    )
    print(text)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
