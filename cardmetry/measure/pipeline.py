"""A card image to a Measurement without models: classical coarse borders, then the measurement engine."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from cardmetry.geometry.specs import CardSpec
from cardmetry.measure.classical import Reduced, detect_graphic, detect_outer, too_small
from cardmetry.measure.engine import measure_borders
from cardmetry.measure.grades import GradeTable, add_grades
from cardmetry.measure.quality import suspected_sleeve_edge
from cardmetry.measure.result import Measurement, Refusal


def measure_image(
    image: np.ndarray,
    spec: CardSpec,
    *,
    side: str = "front",
    name: str = "",
    grade_tables: Sequence[GradeTable] = (),
) -> Measurement | Refusal:
    """Measure one RGB image, with grade ceilings from `grade_tables` (reading files is the caller's: see
    `cardmetry.data.images.load_image`)."""
    start = time.perf_counter()
    if reason := too_small(image):
        return Refusal(name, side, reason)
    reduced = Reduced.of(image)  # the detectors' and the sleeve check's working copy, made once
    outer = detect_outer(image, spec, reduced=reduced)
    if isinstance(outer, str):
        return Refusal(name, side, f"outer border: {outer}")
    sleeve = suspected_sleeve_edge(image, outer, spec, reduced=reduced)
    graphic = detect_graphic(image, outer, spec, reduced=reduced)
    if isinstance(graphic, str):
        return Refusal(name, side, f"graphic border: {graphic}", [sleeve] if sleeve else [])
    result = measure_borders(image, outer, graphic, spec, side=side, image_name=name)
    if sleeve:
        result.flags.append(sleeve)
    add_grades(result, grade_tables)
    result.timing_ms["total"] = (time.perf_counter() - start) * 1000
    return result
