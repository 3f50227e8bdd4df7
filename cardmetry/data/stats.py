"""What is in a dataset: images, instances per class, image sizes, and border widths where the labels allow."""

from __future__ import annotations

from collections import Counter

import numpy as np

from cardmetry.data.instances import GRAPHIC, OUTER, Dataset, LabeledImage
from cardmetry.geometry.lines import align_quad, quad_from_polygon, upright_quad
from cardmetry.geometry.specs import STANDARD, CardSpec
from cardmetry.geometry.stations import border_widths, centering, graphic_lines_in_card, side_means


def dataset_stats(dataset: Dataset, spec: CardSpec = STANDARD) -> dict[str, object]:
    """Counts and sizes; border widths (mm, on the given card spec) from images with outer and graphic outlines."""
    per_class = Counter(inst.class_id for image in dataset.images for inst in image.instances)
    boxes = sum(inst.is_box for image in dataset.images for inst in image.instances)
    widths = np.array([image.width for image in dataset.images]) if dataset.images else np.zeros(1)
    heights = np.array([image.height for image in dataset.images]) if dataset.images else np.zeros(1)
    return {
        "format": dataset.format,
        "images": len(dataset.images),
        "instances": sum(per_class.values()),
        "instances_per_class": {dataset.class_name(k): per_class[k] for k in sorted(per_class)},
        "box_labels": boxes,
        "polygon_labels": sum(per_class.values()) - boxes,
        "image_size": {
            "width": _summary(widths),
            "height": _summary(heights),
        },
        "borders_mm": _border_summary(dataset, spec),
    }


def _summary(values: np.ndarray) -> dict[str, float]:
    return {"min": float(values.min()), "median": float(np.median(values)), "max": float(values.max())}


def image_borders(image: LabeledImage, spec: CardSpec = STANDARD) -> dict[str, object] | None:
    """Side means and centering from one outer and one graphic outline, or None when the labels do not allow it.

    Box labels are not used: a loose axis-aligned box says nothing exact about a border (refine them first).
    """
    outer = [i for i in image.instances if i.class_id == OUTER and not i.is_box]
    graphic = [i for i in image.instances if i.class_id == GRAPHIC and not i.is_box]
    if len(outer) != 1 or len(graphic) != 1:
        return None
    try:
        outer_quad = upright_quad(quad_from_polygon(outer[0].polygon))
        graphic_quad = align_quad(quad_from_polygon(graphic[0].polygon), outer_quad)
    except ValueError:
        return None
    lines = graphic_lines_in_card(outer_quad, graphic_quad, spec)
    widths = border_widths(lines, spec)
    return {"spec": spec.name, "side_means_mm": side_means(widths), "centering": centering(widths)}


def _border_summary(dataset: Dataset, spec: CardSpec) -> dict[str, object] | None:
    measured = [b for b in (image_borders(image, spec) for image in dataset.images) if b is not None]
    if not measured:
        return None
    out: dict[str, object] = {"images": len(measured)}
    for side in ("left", "right", "top", "bottom"):
        values = np.array([m["side_means_mm"][side] for m in measured])  # type: ignore[index]
        out[side] = {"mean": float(values.mean()), "min": float(values.min()), "max": float(values.max())}
    lr = np.array([m["centering"]["left_right"][0] for m in measured])  # type: ignore[index]
    tb = np.array([m["centering"]["top_bottom"][0] for m in measured])  # type: ignore[index]
    out["left_share_pct"] = _summary(lr)
    out["top_share_pct"] = _summary(tb)
    return out
