"""`cardmetry measure` without models: classical coarse borders, then the measurement engine."""

from __future__ import annotations

import time
from pathlib import Path

from cardmetry.data.images import ImageError, load_image
from cardmetry.geometry.specs import CardSpec
from cardmetry.measure.classical import detect_graphic, detect_outer
from cardmetry.measure.engine import measure_borders
from cardmetry.measure.result import Measurement, Refusal


def measure_file(path: Path, spec: CardSpec, side: str = "front") -> Measurement | Refusal:
    """Measure one image file; an unreadable file, like a card that cannot be measured, is a refusal with a reason."""
    start = time.perf_counter()
    try:
        image = load_image(path)
    except ImageError as error:
        return Refusal(path.name, side, str(error))
    outer = detect_outer(image, spec)
    if isinstance(outer, str):
        return Refusal(path.name, side, f"outer border: {outer}")
    graphic = detect_graphic(image, outer, spec)
    if isinstance(graphic, str):
        return Refusal(path.name, side, f"graphic border: {graphic}")
    result = measure_borders(image, outer, graphic, spec, side=side, image_name=path.name)
    result.timing_ms["total"] = (time.perf_counter() - start) * 1000
    return result
