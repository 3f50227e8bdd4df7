"""What `cardmetry measure --out DIR` writes for each card, and the summary line a grader reads first.

Every file is written whole or not at all (a temporary file renamed into place), so an interrupted batch never
leaves a half-written report that looks complete.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

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


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Write bytes to a temporary file beside `path`, then rename it over `path` (atomic on one file system)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        # os.open with 0o666 lets the umask decide the mode, as a plain open() would (mkstemp would make it 0600).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        tmp.replace(target)  # os.replace: atomic, and over an existing file too
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise OSError(f"cannot write {target}: {error.strerror or error}") from error


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """`atomic_write` for text, as UTF-8."""
    atomic_write(path, text.encode("utf-8"))


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
