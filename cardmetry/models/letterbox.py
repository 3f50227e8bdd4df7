"""Fit an image into the network's square input and map the network's pixels back.

The image is scaled by one factor to fit `size` and padded at the right and bottom, so a point in the label
convention (x = 0 at the left edge of the first pixel) maps back by a single division: pixel edges scale exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114  # mid grey, as detection frameworks pad


@dataclass(frozen=True)
class Letterbox:
    size: int  # the square input side
    scale: float  # input pixels per image pixel
    width: int  # the image's size
    height: int

    @classmethod
    def for_image(cls, width: int, height: int, size: int) -> Letterbox:
        return cls(size, min(size / width, size / height), width, height)

    @property
    def inner(self) -> tuple[int, int]:
        """(width, height) of the scaled image inside the input."""
        return max(1, round(self.width * self.scale)), max(1, round(self.height * self.scale))

    def apply(self, image: np.ndarray) -> np.ndarray:
        """The (size, size, channels) input: the image scaled (area averaging when shrinking) and padded."""
        w, h = self.inner
        interpolation = cv2.INTER_AREA if self.scale < 1 else cv2.INTER_LINEAR
        scaled = cv2.resize(image, (w, h), interpolation=interpolation)
        out = np.full((self.size, self.size, *image.shape[2:]), PAD_VALUE, dtype=image.dtype)
        out[:h, :w] = scaled
        return out

    def points_to_input(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points, float) * self.scale

    def points_to_image(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points, float) / self.scale

    def mask_to_image(self, mask: np.ndarray) -> np.ndarray:
        """A probability or 0/1 map over the input back to the image's size (bilinear; padding dropped)."""
        w, h = self.inner
        cropped = np.ascontiguousarray(mask[:h, :w], dtype=np.float32)
        return cv2.resize(cropped, (self.width, self.height), interpolation=cv2.INTER_LINEAR)


def to_tensor_layout(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB to (3, H, W) float32 in [0, 1], the layout every backend's network takes."""
    return np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) / 255.0
