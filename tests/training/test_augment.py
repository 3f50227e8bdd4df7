"""Augmentation keeps geometry exact: the pixels and the polygons move through the same homography."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cardmetry.training.augment import random_homography, rasterise, warp_image, warp_points
from cardmetry.training.config import AugmentConfig

SIZE = 160


def card_image(polygon: np.ndarray, width: int, height: int, supersample: int = 8) -> np.ndarray:
    """A white polygon on black with exact area coverage per pixel (label convention), drawn supersampled."""
    big = np.zeros((height * supersample, width * supersample), np.uint8)
    fixed = np.round((polygon * supersample - 0.5) * 16).astype(np.int32)
    cv2.fillPoly(big, [fixed], 255, lineType=cv2.LINE_8, shift=4)
    grey = cv2.resize(big, (width, height), interpolation=cv2.INTER_AREA)
    return np.dstack([grey] * 3)


def grey_moments(grey: np.ndarray) -> tuple[float, float, float]:
    """Area and centroid of a coverage image, pixel centres at j + 0.5."""
    weight = grey.astype(float) / 255
    ys, xs = np.mgrid[: grey.shape[0], : grey.shape[1]]
    area = weight.sum()
    return area, float((weight * (xs + 0.5)).sum() / area), float((weight * (ys + 0.5)).sum() / area)


def polygon_moments(polygon: np.ndarray) -> tuple[float, float, float]:
    x, y = polygon[:, 0], polygon[:, 1]
    x1, y1 = np.roll(x, -1), np.roll(y, -1)
    cross = x * y1 - x1 * y
    area = cross.sum() / 2
    return abs(area), float(((x + x1) * cross).sum() / (6 * area)), float(((y + y1) * cross).sum() / (6 * area))


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_warped_pixels_and_warped_polygon_agree_to_a_fraction_of_a_pixel(seed: int) -> None:
    width, height = 300, 400
    polygon = np.array([[110.3, 120.7], [190.2, 126.1], [185.9, 270.4], [105.5, 262.8]])  # stays in view
    image = card_image(polygon, width, height)
    config = AugmentConfig(perspective=0.03, rotate_deg=20, scale=0.1, translate=0.03)
    homography = random_homography(np.random.default_rng(seed), width, height, SIZE, config)
    moved = warp_points(polygon, homography)
    # interpolation is linear, so taking away the warped empty image leaves the card alone, without the padding
    warped = warp_image(image, homography, SIZE).astype(int) - warp_image(np.zeros_like(image), homography, SIZE)
    area, cx, cy = grey_moments(warped[..., 0])
    true_area, true_cx, true_cy = polygon_moments(moved)
    perimeter = cv2.arcLength(moved.astype(np.float32), closed=True)
    # a half-pixel slip of the convention would move the centroid by 0.5 px and the edge by 0.5 px all round
    assert abs(cx - true_cx) < 0.05 and abs(cy - true_cy) < 0.05
    assert abs(area - true_area) / perimeter < 0.05
    mask = rasterise(moved, SIZE)
    assert abs(int(mask.sum()) - true_area) / perimeter < 0.2  # whole pixels, in when at least half covered


def test_without_augmentation_the_view_is_the_letterbox() -> None:
    from cardmetry.models.letterbox import Letterbox
    from cardmetry.training.augment import letterbox_homography

    box = Letterbox.for_image(300, 400, SIZE)
    homography = letterbox_homography(300, 400, SIZE)
    point = np.array([[123.4, 321.0]])
    assert np.allclose(warp_points(point, homography), box.points_to_input(point))


def test_the_same_seed_gives_the_same_view() -> None:
    a = random_homography(np.random.default_rng(7), 300, 400, SIZE, AugmentConfig())
    b = random_homography(np.random.default_rng(7), 300, 400, SIZE, AugmentConfig())
    assert np.array_equal(a, b)
