"""What `cardmetry measure --out DIR` writes for each card, and the summary line a grader reads first.

Every file is written whole or not at all (`measure.files`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cardmetry.measure.files import write_png, write_text_atomic
from cardmetry.measure.overlay import draw_overlay
from cardmetry.measure.report import render_report
from cardmetry.measure.result import Measurement, Refusal

SUMMARY_FIELDS = (
    "image",
    "status",
    "left_right",
    "top_bottom",
    "worst_left_right",
    "worst_top_bottom",
    "frame_skew_deg",
    "grades",
    "flags",
    "reason",
)


def output_stems(paths: Sequence[Path]) -> list[str]:
    """A distinct file stem per input, in order: `a/card.jpg` and `b/card.png` become `card` and `card-2`.

    Compared case-insensitively, because two names differing only in case are one file on macOS and Windows.
    """
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        key = path.stem.lower()
        seen[key] = seen.get(key, 0) + 1
        stems.append(path.stem if seen[key] == 1 else f"{path.stem}-{seen[key]}")
    return stems


def summary_row(result: Measurement | Refusal) -> dict[str, str]:
    """One line of summary.csv: centering per axis as `left/right`, the worst pairs, grade ceilings, flags."""
    row = dict.fromkeys(SUMMARY_FIELDS, "")
    row.update(image=result.image, status=result.status, flags="; ".join(result.flags))
    if isinstance(result, Refusal):
        row["reason"] = result.reason
        return row
    centering = result.centering
    row["left_right"] = _pair(centering["left_right"])
    row["top_bottom"] = _pair(centering["top_bottom"])
    for axis in ("worst_left_right", "worst_top_bottom"):
        row[axis] = f"{_pair(centering[axis]['ratio'])} at station {centering[axis]['station']}"
    row["frame_skew_deg"] = f"{result.skew_deg['frame']:.3f}"
    row["grades"] = "; ".join(
        f"{grader} {entry['ceiling']}" for grader, entry in result.grades.items() if entry.get("ceiling") is not None
    )
    return row


def summary_csv(rows: Sequence[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def document_text(result: Measurement | Refusal) -> str:
    """The CONTRACT.md document as `measure --json` prints it."""
    return json.dumps(result.as_json(), indent=1) + "\n"


def _pair(ratio: Sequence[float]) -> str:
    return f"{ratio[0]:.1f}/{ratio[1]:.1f}"


def write_pictures(
    image: np.ndarray, result: Measurement | Refusal, overlay: Path | None = None, report: Path | None = None
) -> None:
    """The overlay PNG and the customer's HTML report, where asked for; the overlay is drawn once for both."""
    if overlay is None and report is None:
        return
    drawn = draw_overlay(image, result)
    if overlay is not None:
        write_png(overlay, drawn)
    if report is not None:
        write_text_atomic(report, render_report(image, result, overlay=drawn))
