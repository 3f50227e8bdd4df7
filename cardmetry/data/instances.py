"""The in-memory form every format reads into and writes from.

Coordinates convention. Label polygons use the continuous image plane of YOLO and COCO: x = 0 is the left edge of
the first pixel, so the centre of pixel column j is at x = j + 0.5. The measurement contract (quads, overlays)
uses OpenCV's convention where that centre is at x = j. `label_to_cv` and `cv_to_label` convert between them;
nothing else should add or subtract the half pixel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DEFAULT_CLASSES: tuple[str, ...] = ("outer", "graphic")
OUTER, GRAPHIC = 0, 1


@dataclass(frozen=True, eq=False)
class Instance:
    """One labelled object: its class and outline (pixels, label convention).

    A box label is kept as its four corners with `is_box` set, so refinement and the YOLO detection writer know
    it is only a box.
    """

    class_id: int
    polygon: np.ndarray  # (N, 2) float64
    is_box: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "polygon", np.asarray(self.polygon, dtype=np.float64).reshape(-1, 2))

    @classmethod
    def from_box(cls, class_id: int, x0: float, y0: float, x1: float, y1: float) -> Instance:
        return cls(class_id, np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]), is_box=True)

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the outline."""
        x0, y0 = self.polygon.min(axis=0)
        x1, y1 = self.polygon.max(axis=0)
        return float(x0), float(y0), float(x1), float(y1)


@dataclass(eq=False)
class LabeledImage:
    """An image (path relative to the dataset root, posix separators), its size, and its instances."""

    path: str
    width: int
    height: int
    instances: list[Instance] = field(default_factory=list)


@dataclass(eq=False)
class Dataset:
    """Labelled images with their class names; `format` says what they were read from."""

    classes: list[str]
    images: list[LabeledImage]
    format: str = ""

    def class_name(self, class_id: int) -> str:
        return self.classes[class_id] if 0 <= class_id < len(self.classes) else f"class {class_id}"


def label_to_cv(points: np.ndarray) -> np.ndarray:
    """Label-convention pixels (pixel edge at 0) to OpenCV's (pixel centre at 0)."""
    return np.asarray(points, float) - 0.5


def cv_to_label(points: np.ndarray) -> np.ndarray:
    return np.asarray(points, float) + 0.5
