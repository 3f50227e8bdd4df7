"""From a network's per-pixel map to an instance's outline."""

from __future__ import annotations

import cv2
import numpy as np

from cardmetry.data.instances import cv_to_label


def largest_outline(mask: np.ndarray) -> np.ndarray | None:
    """The outline of the largest connected region of a boolean mask, as a polygon in the label convention
    (contour points are pixel centres, shifted by half a pixel); None when the mask is empty."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    largest = max(contours, key=cv2.contourArea)
    if len(largest) < 3:
        return None
    return cv_to_label(largest.reshape(-1, 2).astype(float))


def box_of(polygon: np.ndarray) -> tuple[float, float, float, float]:
    x0, y0 = polygon.min(axis=0)
    x1, y1 = polygon.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)
