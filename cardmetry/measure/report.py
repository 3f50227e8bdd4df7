"""The customer report: one self-contained, printable HTML page for a measurement or a refusal.

Everything is inside the page (images as base64 data URIs, CSS inline, no scripts, fonts or links), so it can be
mailed, archived or printed years later and still show the same thing. Every figure comes from the result's own
JSON document (CONTRACT.md), so the page says exactly what `cardmetry measure --json` says. Every string from the
result is HTML-escaped: image names, flags and reasons are not ours to trust.
"""

from __future__ import annotations

import base64
import html
import json

import cv2
import numpy as np

from cardmetry.measure.files import as_rgb, encode_image
from cardmetry.measure.overlay import draw_overlay
from cardmetry.measure.result import Measurement, Refusal

CARD_IMAGE_PX = 1000  # the card image's long side in the report: enough to see, small enough to mail
OVERLAY_IMAGE_PX = 1400  # the overlay keeps more pixels: its labels and thin lines must survive the downscale
JPEG_QUALITY = 88

MEANING = (
    "Border widths are measured in the rectified card frame: a homography maps the card's outer edge onto its "
    "nominal rectangle, so the camera's perspective and the card's rotation do not change them. Each width is the "
    "distance from the card's edge to the printed frame's edge at one of 24 fixed stations, with a one-sigma "
    "uncertainty from the edge fits. Centering is each side's share of the two opposing borders: the mean over an "
    "axis, and its worst station, which is what graders look at. Grades are ceilings from centering alone: the "
    "best grade the centering permits, not a prediction of the grade, which also depends on corners, edges and "
    "surface."
)

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1b1b1b;
       margin: 2em auto; max-width: 60em; padding: 0 1em; line-height: 1.4; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.15em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }
.sub { color: #555; margin-top: 0; }
.meaning { background: #f4f4f4; padding: 0.6em 0.9em; border-left: 3px solid #888; font-size: 0.92em; }
.refused { background: #fdecec; border-left: 4px solid #b00; padding: 0.8em 1em; font-size: 1.1em; }
.figures { display: flex; gap: 1em; flex-wrap: wrap; }
figure { margin: 0; flex: 1 1 22em; }
figure img { width: 100%; height: auto; border: 1px solid #ccc; }
figcaption { font-size: 0.85em; color: #555; }
table { border-collapse: collapse; margin: 0.4em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.worst td { background: #fde2e2; font-weight: 600; }
.points { display: flex; gap: 1em; flex-wrap: wrap; align-items: flex-start; }
.flags li { color: #8a4b00; }
.small { font-size: 0.85em; color: #555; }
@page { margin: 12mm; }
@media print {
  body { margin: 0; max-width: none; font-size: 10pt; }
  h2 { break-after: avoid; }
  table, figure, .meaning, .refused { break-inside: avoid; }
  figure img { max-height: 120mm; width: auto; max-width: 100%; }
  tr.worst td { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""

WORST_ROW = ' class="worst"'
EDGE_TITLES = {"left": "Left", "right": "Right", "top": "Top", "bottom": "Bottom"}


def render_report(image: np.ndarray, result: Measurement | Refusal, *, overlay: np.ndarray | None = None) -> str:
    """The report page as HTML text. `overlay` is one already drawn (so the CLI draws it once for the PNG and the
    report); when None it is drawn here. A refusal's page shows the image alone: there is nothing to overlay."""
    document = result.as_json()
    if isinstance(result, Refusal):
        body = _refusal_body(document, image)
    else:
        body = _measurement_body(document, image, draw_overlay(image, result) if overlay is None else overlay)
    title = f"Centering report: {document.get('image') or 'card'}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


# --- pages ----------------------------------------------------------------------------------------------------


def _measurement_body(doc: dict, image: np.ndarray, overlay: np.ndarray) -> str:
    return "\n".join(
        [
            _heading(doc, "Centering report"),
            _summary(doc),
            f'<p class="meaning">{_e(MEANING)}</p>',
            _figures(image, overlay),
            "<h2>Centering</h2>",
            _centering_table(doc),
            "<h2>Grade ceilings from centering</h2>",
            _grades_table(doc.get("grades") or {}),
            "<h2>The 24 stations</h2>",
            _points_tables(doc),
            "<h2>Skew of the printed frame</h2>",
            _skew_table(doc["skew_deg"]),
            "<h2>Quality</h2>",
            _quality(doc),
            _footer(doc),
        ]
    )


def _refusal_body(doc: dict, image: np.ndarray) -> str:
    # Deliberately no station table, centering or grades: a refusal carries no border widths (CONTRACT.md).
    return "\n".join(
        [
            _heading(doc, "Not measured"),
            f'<div class="refused"><strong>This card was not measured.</strong> Reason: {_e(doc["reason"])}</div>',
            "<p>cardmetry never guesses a border it cannot find with confidence, so this page reports no widths, "
            "centering or grades. A sharper, evenly lit image with the whole card inside it and no sleeve usually "
            "measures.</p>",
            '<div class="figures">'
            + _figure(image, CARD_IMAGE_PX, "the card image", "The image as given: not measured.")
            + "</div>",
            "<h2>Quality flags</h2>",
            _flags(doc["quality"]["flags"]),
            _footer(doc),
        ]
    )


def _heading(doc: dict, title: str) -> str:
    name = doc.get("image") or "card"
    return f'<h1>{_e(title)}: {_e(name)}</h1>\n<p class="sub">{_e(doc["side"])} side</p>'


def _summary(doc: dict) -> str:
    c = doc["centering"]
    lr, tb = c["left_right"], c["top_bottom"]
    wlr, wtb = c["worst_left_right"], c["worst_top_bottom"]
    return (
        '<p class="summary">'
        f"<strong>Left/right {_ratio(lr)}</strong> (worst station L{_e(wlr['station'])}/R{_e(wlr['station'])}: "
        f"{_ratio(wlr['ratio'])}) &middot; "
        f"<strong>Top/bottom {_ratio(tb)}</strong> (worst station T{_e(wtb['station'])}/B{_e(wtb['station'])}: "
        f"{_ratio(wtb['ratio'])})</p>"
    )


def _figures(image: np.ndarray, overlay: np.ndarray) -> str:
    caption = (
        "What was measured: card edge (cyan), printed frame (magenta), stations (yellow, width in mm), worst station "
        "per axis (red)."
    )
    return (
        '<div class="figures">'
        + _figure(image, CARD_IMAGE_PX, "the card image", "The image as given.")
        + _figure(overlay, OVERLAY_IMAGE_PX, "the overlay", caption)
        + "</div>"
    )


def _figure(rgb: np.ndarray, long_side: int, alt: str, caption: str) -> str:
    src = _data_uri(rgb, long_side)
    return f'<figure><img alt="{_e(alt)}" src="{src}"><figcaption>{_e(caption)}</figcaption></figure>'


def _centering_table(doc: dict) -> str:
    c = doc["centering"]
    rows = []
    for axis, mean_key, worst_key, sides in (
        ("Left / right", "left_right", "worst_left_right", "LR"),
        ("Top / bottom", "top_bottom", "worst_top_bottom", "TB"),
    ):
        worst = c[worst_key]
        k = _e(worst["station"])
        rows.append(
            f'<tr><td>{axis}</td><td class="num">{_ratio(c[mean_key])}</td>'
            f'<td>{sides[0]}{k} / {sides[1]}{k}</td><td class="num">{_ratio(worst["ratio"])}</td></tr>'
        )
    return (
        "<table><thead><tr><th>axis</th><th>mean (%)</th><th>worst station</th><th>worst (%)</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _grades_table(grades: dict) -> str:
    """Generic over graders: whatever a grade table adds, its ceiling, table id, label and note are shown."""
    if not grades:
        return "<p>No grade tables were applied to this measurement.</p>"
    rows = []
    for grader, entry in grades.items():
        fields = entry if isinstance(entry, dict) else {"ceiling": entry}
        shown = _ceiling(fields)
        notes = [_e(fields[key]) for key in ("label", "note") if fields.get(key) not in (None, "")]
        known = {"ceiling", "table", "label", "note", "sourced"}
        notes.extend(_extra(key, value) for key, value in fields.items() if key not in known)
        rows.append(
            f"<tr><td>{_e(str(grader).upper())}</td><td>{shown}</td><td>{_e(fields.get('table') or '')}</td>"
            f"<td>{'<br>'.join(notes)}</td></tr>"
        )
    return (
        "<table><thead><tr><th>grader</th><th>ceiling</th><th>table</th><th>notes</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _ceiling(fields: dict) -> str:
    """A null ceiling means the grader's table has no primary source (CONTRACT.md: never silently guessed); a
    table that has one but no ceiling to give says so; an entry without the key shows nothing rather than a guess."""
    if "ceiling" not in fields:
        return ""
    if fields["ceiling"] is not None:
        return _e(fields["ceiling"])
    return "no ceiling" if fields.get("sourced") is True else "not graded (unsourced)"


def _points_tables(doc: dict) -> str:
    """One small table per edge, side by side on screen and paper; the worst pairs highlighted."""
    c = doc["centering"]
    worst = {f"{s}{c['worst_left_right']['station']}" for s in "LR"}
    worst |= {f"{s}{c['worst_top_bottom']['station']}" for s in "TB"}
    tables = []
    for edge, title in EDGE_TITLES.items():
        rows = [
            f"<tr{WORST_ROW if p['id'] in worst else ''}><td>{_e(p['id'])}</td>"
            f'<td class="num">{_e(p["position_mm"])}</td><td class="num">{_mm(p["border_mm"])}</td>'
            f'<td class="num">&plusmn; {_mm(p["uncertainty_mm"])}</td></tr>'
            for p in doc["points"]
            if p["edge"] == edge
        ]
        tables.append(
            f'<table class="points-{edge}"><caption>{title}</caption><thead><tr><th>id</th><th>at (mm)</th>'
            f"<th>border (mm)</th><th>1&sigma; (mm)</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )
    return f'<div class="points">{"".join(tables)}</div>'


def _skew_table(skew: dict) -> str:
    cells = "".join(f'<td class="num">{float(skew[k]):+.3f}</td>' for k in skew)
    heads = "".join(f"<th>{_e(k)}</th>" for k in skew)
    return (
        f"<table><thead><tr>{heads}</tr></thead><tbody><tr>{cells}</tr></tbody></table>"
        '<p class="small">Degrees, positive clockwise, of the printed frame against the card outline: "frame" is the '
        "mean of the four edges.</p>"
    )


def _quality(doc: dict) -> str:
    spec = doc["card_spec"]
    q = doc["quality"]
    sigmas = [p["uncertainty_mm"] for p in doc["points"]]
    rows = [
        ("card spec", f"{_e(spec['name'])} ({_e(spec['width_mm'])} &times; {_e(spec['height_mm'])} mm)"),
        ("resolution", f"{_e(doc['px_per_mm'])} px/mm"),
        ("outer edge fit RMS", f"{_e(q['outer_fit_rms_px'])} px"),
        ("graphic edge fit RMS", f"{_e(q['graphic_fit_rms_px'])} px"),
        ("uncertainty (1&sigma;)", f"largest {_mm(max(sigmas))} mm, mean {_mm(sum(sigmas) / len(sigmas))} mm"),
    ]
    table = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table><tbody>{table}</tbody></table>\n<h3>Quality flags</h3>\n{_flags(q['flags'])}"


def _flags(flags: list) -> str:
    if not flags:
        return "<p>None.</p>"
    return '<ul class="flags">' + "".join(f"<li>{_e(flag)}</li>" for flag in flags) + "</ul>"


def _footer(doc: dict) -> str:
    timing = ", ".join(f"{_e(k)} {_e(v)} ms" for k, v in (doc.get("timing_ms") or {}).items())
    return (
        f'<p class="small">Schema {_e(doc["schema"])} &middot; status {_e(doc["status"])}'
        f"{' &middot; time ' + timing if timing else ''} &middot; measured by cardmetry.</p>"
    )


# --- helpers --------------------------------------------------------------------------------------------------


def _e(value: object) -> str:
    """Escape anything for HTML text and attribute values."""
    return html.escape(str(value), quote=True)


def _ratio(pair: list) -> str:
    return f"{float(pair[0]):.1f} / {float(pair[1]):.1f}"


def _mm(value: float) -> str:
    """Millimetres with the JSON's four decimals, so the page and `--json` show the same digits."""
    return f"{float(value):.4f}"


def _extra(key: str, value: object) -> str:
    """Any other key a grade entry carries, readable without knowing its meaning: `with_leeway: {ceiling, label}`
    reads "with leeway: 9 (Mint)", `below_table: true` reads "below table"."""
    name = _e(str(key).replace("_", " "))
    if value is True:
        return name
    if isinstance(value, dict) and "ceiling" in value:
        label = value.get("label")
        return f"{name}: {_e(value['ceiling'])}" + (f" ({_e(label)})" if label else "")
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return f"{name}: {_e(text)}"


def _data_uri(rgb: np.ndarray, long_side: int) -> str:
    """A JPEG data URI of the image with its long side at most `long_side` px (INTER_AREA: no aliasing)."""
    array = as_rgb(rgb)
    scale = long_side / max(array.shape[:2])
    if scale < 1:
        size = (max(1, round(array.shape[1] * scale)), max(1, round(array.shape[0] * scale)))
        array = cv2.resize(array, size, interpolation=cv2.INTER_AREA)
    return "data:image/jpeg;base64," + base64.b64encode(encode_image(array, ".jpg", JPEG_QUALITY)).decode("ascii")
