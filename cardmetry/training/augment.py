"""Augmentations that keep the geometry exact.

Every geometric change is one homography in the label convention (x = 0 at the left edge of the first pixel):
the pixels move through `cv2.warpPerspective` with the same matrix expressed in OpenCV's convention, and the
polygons move through the matrix itself, so the truth stays exact to the rasteriser's sixteenth of a pixel.
Colour, blur, noise and JPEG change pixels only.
"""

from __future__ import annotations

import cv2
import numpy as np

from cardmetry.models.letterbox import PAD_VALUE, Letterbox
from cardmetry.training.config import AugmentConfig

_SUBPIXEL_BITS = 4  # cv2.fillPoly's fixed-point shift: vertices to 1/16 px
_SUPERSAMPLE = 8  # masks are drawn at 8x and averaged down (see rasterise)


def translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0, dx], [0, 1.0, dy], [0, 0, 1.0]])


def letterbox_homography(width: int, height: int, size: int) -> np.ndarray:
    """What inference does: scale to fit `size`, anchored top-left (models.letterbox.Letterbox)."""
    return np.diag([*Letterbox.for_image(width, height, size).scales, 1.0])


def random_homography(rng: np.random.Generator, width: int, height: int, size: int, cfg: AugmentConfig) -> np.ndarray:
    """A random view of a width x height image in a size x size input: fit and centre it, then rotate, zoom,
    shift and tilt it about the input's centre."""
    scale = min(size / width, size / height)
    centre = size / 2
    fit = translation(centre, centre) @ np.diag([scale, scale, 1.0]) @ translation(-width / 2, -height / 2)
    angle = np.radians(rng.uniform(-cfg.rotate_deg, cfg.rotate_deg))
    if cfg.quarter_turns:
        angle += rng.integers(4) * np.pi / 2
    zoom = rng.uniform(1 - cfg.scale, 1 + cfg.scale)
    cos, sin = np.cos(angle) * zoom, np.sin(angle) * zoom
    turn = np.array([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1.0]])
    shift = rng.uniform(-cfg.translate, cfg.translate, 2) * size
    affine = translation(centre + shift[0], centre + shift[1]) @ turn @ translation(-centre, -centre) @ fit
    if cfg.perspective <= 0:
        return affine
    corners = np.array([[0, 0], [size, 0], [size, size], [0, size]], np.float32)
    moved = corners + rng.uniform(-cfg.perspective, cfg.perspective, (4, 2)).astype(np.float32) * size
    return cv2.getPerspectiveTransform(corners, moved).astype(float) @ affine


def warp_image(image: np.ndarray, homography: np.ndarray, size: int) -> np.ndarray:
    """The image seen through a label-convention homography, as a size x size input."""
    as_cv = translation(-0.5, -0.5) @ homography @ translation(0.5, 0.5)
    return cv2.warpPerspective(
        image, as_cv, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
        borderValue=(PAD_VALUE, PAD_VALUE, PAD_VALUE),
    )


def warp_points(points: np.ndarray, homography: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, float).reshape(-1, 2)
    mapped = np.c_[pts, np.ones(len(pts))] @ homography.T
    return mapped[:, :2] / mapped[:, 2:3]


def rasterise(polygon: np.ndarray, size: int) -> np.ndarray:
    """A (size, size) uint8 mask of a label-convention polygon: a pixel is in when the polygon covers at least
    half of it. cv2.fillPoly also fills every pixel the outline touches, which grows a mask by up to a pixel
    all round; drawn at 8x and averaged down, that growth shrinks to an eighth of a pixel or less."""
    fine = np.zeros((size * _SUPERSAMPLE, size * _SUPERSAMPLE), np.uint8)
    scaled = np.asarray(polygon, float) * _SUPERSAMPLE - 0.5
    fixed = np.round(scaled * (1 << _SUBPIXEL_BITS)).astype(np.int32)
    cv2.fillPoly(fine, [fixed], 255, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
    coverage = cv2.resize(fine, (size, size), interpolation=cv2.INTER_AREA)
    return (coverage >= 128).astype(np.uint8)


def photometric(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Colour, blur, noise and JPEG changes of an RGB uint8 image (geometry untouched)."""
    out = image.astype(np.float32)
    if cfg.colour > 0:
        gain = rng.uniform(1 - cfg.colour, 1 + cfg.colour)
        bias = rng.uniform(-cfg.colour, cfg.colour) * 64
        grey = out.mean(axis=2, keepdims=True)
        saturation = rng.uniform(1 - cfg.colour, 1 + cfg.colour)
        out = (grey + (out - grey) * saturation) * gain + bias
    if rng.random() < cfg.blur:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 1.5))
    if rng.random() < cfg.noise:
        out = out + rng.normal(0, rng.uniform(2, 8), out.shape).astype(np.float32)
    result = np.clip(out, 0, 255).astype(np.uint8)
    if rng.random() < cfg.jpeg:
        ok, encoded = cv2.imencode(".jpg", result, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(40, 91))])
        if ok:
            result = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
    return result
