"""Preprocessing: one function, BGR (OpenCV) by default, RGB on request, the spec's formula."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from deen.errors import DeenError
from deen.preprocess import INPUT_HEIGHT, INPUT_WIDTH, MEAN_RGB, STD_RGB, preprocess


def _image(seed: int = 0, shape=(200, 90, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_shape_and_dtype():
    batch = preprocess([_image(0), _image(1, (50, 40, 3))])
    assert batch.shape == (2, 3, INPUT_HEIGHT, INPUT_WIDTH) and batch.dtype == np.float32


def test_uniform_colour_gives_the_normalised_constant():
    rgb = (200, 100, 50)
    bgr_image = np.empty((300, 100, 3), np.uint8)
    bgr_image[:] = rgb[::-1]
    batch = preprocess([bgr_image])  # default: BGR, as cv2.imread returns
    for channel in range(3):
        expected = (rgb[channel] / 255 - MEAN_RGB[channel]) / STD_RGB[channel]
        assert np.allclose(batch[0, channel], expected, atol=1e-6)


def test_bgr_and_rgb_orders():
    bgr = _image(3)
    rgb = bgr[:, :, ::-1].copy()
    assert np.array_equal(preprocess([bgr], "bgr"), preprocess([rgb], "rgb"))
    assert not np.array_equal(preprocess([bgr], "bgr"), preprocess([bgr], "rgb"))


def test_matches_the_reference_test_transform():
    """Pillow Lanczos resize of the uint8 RGB image, /255, ImageNet normalisation."""
    rgb = _image(4, (160, 64, 3))
    resized = np.asarray(Image.fromarray(rgb).resize((144, 384), Image.LANCZOS), np.float32)
    expected = ((resized / 255 - np.array(MEAN_RGB)) / np.array(STD_RGB)).transpose(2, 0, 1)
    assert np.allclose(preprocess([rgb], "rgb")[0], expected, atol=1e-5)


def test_grayscale_and_alpha():
    gray = _image(5, (120, 60))
    assert np.array_equal(preprocess([gray]), preprocess([np.dstack([gray] * 3)]))
    rgba = _image(6, (120, 60, 4))
    assert np.array_equal(preprocess([rgba], "rgb"), preprocess([rgba[:, :, :3].copy()], "rgb"))


@pytest.mark.parametrize("bad", [np.zeros((10, 10, 3), np.float32), np.zeros((10, 10, 2), np.uint8),
                                 np.zeros((0, 10, 3), np.uint8), "image.jpg"])
def test_bad_images_are_rejected(bad):
    with pytest.raises(DeenError, match="images must be"):
        preprocess([bad])


def test_bad_colour_order():
    with pytest.raises(DeenError, match="color order"):
        preprocess([_image()], "bgra")
