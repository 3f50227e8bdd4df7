"""The `classical` backend: the measurement layer's no-model border detector, behind the predictor interface.

It trains nothing and builds no network; it is here so that every trained backend can be compared with the
baseline a user has before any training (cards on a plain background that contrasts with the card). Its
predictor works on the full image, not a letterboxed copy: the detector fits each edge to sub-pixel samples of
the original pixels, which a network input would throw away.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import cv2
import numpy as np
from torch import nn

from cardmetry.data.instances import GRAPHIC, OUTER, cv_to_label
from cardmetry.geometry.specs import STANDARD, CardSpec
from cardmetry.measure.classical import Reduced, detect_graphic, detect_outer
from cardmetry.models.base import Backend, ModelSpec, PredictedInstance
from cardmetry.models.letterbox import NetworkInput
from cardmetry.models.outlines import box_of

log = logging.getLogger(__name__)
_SHIFT = 4  # fillPoly's fractional bits: corners placed to 1/16 px instead of rounded to whole pixels


def quad_instance(class_id: int, quad_cv: np.ndarray, shape: tuple[int, ...]) -> PredictedInstance:
    """An instance from a quad in OpenCV pixels: the quad itself as the polygon (label convention, exact), and
    the filled quad over the image as a 0/1 mask."""
    mask = np.zeros(shape[:2], dtype=np.uint8)
    corners = np.round(np.asarray(quad_cv, float) * (1 << _SHIFT)).astype(np.int32)
    cv2.fillPoly(mask, [corners], 1, lineType=cv2.LINE_8, shift=_SHIFT)
    polygon = cv_to_label(quad_cv)
    return PredictedInstance(class_id, 1.0, mask.astype(np.float32), polygon, box_of(polygon))


class ClassicalPredictor:
    """Finds the outer and graphic quads of one card (`card` gives the physical size the detector checks the
    shape against). `last_reason` holds why the last image gave fewer instances than asked for, else None."""

    def __init__(self, spec: ModelSpec, card: CardSpec = STANDARD) -> None:
        self.spec, self.card = spec, card
        self.last_reason: str | None = None

    def predict(self, image: np.ndarray, prepared: NetworkInput | None = None) -> list[PredictedInstance]:
        """The instances of the classes `spec.classes` asks for, in that order: none when the outer border is not
        found (the graphic search starts from it), only the outer one when the graphic border is not. A network's
        `prepared` input is not read."""
        self.last_reason = None
        reduced = Reduced.of(image)  # made once: both detectors read it
        outer = detect_outer(image, self.card, reduced=reduced)
        if isinstance(outer, str):
            return self._refuse(f"outer border: {outer}", [])
        found = {OUTER: outer}
        if GRAPHIC in self.spec.classes:
            graphic = detect_graphic(image, outer, self.card, reduced=reduced)
            if isinstance(graphic, str):
                return self._refuse(f"graphic border: {graphic}", self._instances(found, image.shape))
            found[GRAPHIC] = graphic
        return self._instances(found, image.shape)

    def _instances(self, found: dict[int, np.ndarray], shape: tuple[int, ...]) -> list[PredictedInstance]:
        return [quad_instance(c, found[c], shape) for c in self.spec.classes if c in found]

    def _refuse(self, reason: str, instances: list[PredictedInstance]) -> list[PredictedInstance]:
        self.last_reason = reason
        log.info("classical detector: %s", reason)
        return instances


class ClassicalBackend(Backend):
    name = "classical"
    description = "the no-model baseline: the measurement layer's classical border detector (plain backgrounds)"
    variants: Mapping[str, str] = {
        "default": "outer and graphic quads from edge fits; needs a background that contrasts with the card"
    }
    default_variant = "default"
    trainable = False

    def build(self, spec: ModelSpec) -> nn.Module:
        raise NotImplementedError("the classical backend has no network: use ClassicalBackend().predictor(spec)")

    def predictor(self, spec: ModelSpec, card: CardSpec = STANDARD) -> ClassicalPredictor:
        self.check_variant(spec.variant)
        unknown = [c for c in spec.classes if c not in (OUTER, GRAPHIC)]
        if unknown:
            raise ValueError(f"the classical detector finds only the outer and graphic borders, not classes {unknown}")
        return ClassicalPredictor(spec, card)
