"""The network's input: where the image lands in it, and how its masks map back."""

from __future__ import annotations

import numpy as np
import pytest

from cardmetry.models.letterbox import PAD_VALUE, Letterbox, NetworkInput


@pytest.mark.parametrize(("width", "height"), [(2296, 1653), (1653, 2297), (1000, 1000)])
def test_a_shape_maps_to_the_input_and_back_in_place(width: int, height: int) -> None:
    # A bright rectangle: its centroid in the input is where the box's per-axis scales put it, and the input's
    # mask scaled back covers the rectangle to within a network pixel's blur.
    image = np.zeros((height, width, 3), np.uint8)
    x0, y0, x1, y1 = width // 5, height // 4, width * 3 // 4, height * 2 // 3
    image[y0:y1, x0:x1] = 255
    box = Letterbox.for_image(width, height, 384)
    scaled = box.apply(image)
    w, h = box.inner
    assert (scaled[h:] == PAD_VALUE).all() and (scaled[:, w:] == PAD_VALUE).all()
    weights = scaled[:h, :w, 0].astype(float)
    rows, cols = np.mgrid[:h, :w] + 0.5  # label convention: a pixel's centre at +0.5
    centroid = np.array([(weights * cols).sum(), (weights * rows).sum()]) / weights.sum()
    expected = box.points_to_input(np.array([(x0 + x1) / 2, (y0 + y1) / 2]))
    assert np.abs(centroid - expected).max() < 0.05
    back = box.mask_to_image(scaled[..., 0].astype(np.float32) / 255) >= 0.5
    truth = image[..., 0] > 0
    assert back.shape == truth.shape
    assert (back & truth).sum() / (back | truth).sum() > 0.995


def test_network_input_is_one_float_batch() -> None:
    image = np.full((800, 600, 3), 255, np.uint8)
    prepared = NetworkInput.of(image, 256)
    assert prepared.batch.shape == (1, 3, 256, 256) and prepared.batch.dtype == np.float32
    assert prepared.box == Letterbox.for_image(600, 800, 256)
    assert prepared.batch[0, :, :, :192].max() == 1.0
