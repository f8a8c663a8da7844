"""Metadata-driven preprocessing and score normalisation (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest

from inspection.core.bundle import Normalization, Preprocessing
from inspection.runtime.preprocess import (
    check_image,
    normalize,
    normalize_map,
    normalize_score,
    preprocess,
    resize_map,
)

PREP = Preprocessing(input_size=(4, 6), mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))


def test_preprocess_applies_scale_mean_std_in_nchw() -> None:
    image = np.zeros((4, 6, 3), dtype=np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 255, 51, 102
    tensor = preprocess(image, PREP)
    assert tensor.shape == (3, 4, 6) and tensor.dtype == np.float32
    np.testing.assert_allclose(tensor[0], (1.0 - 0.5) / 0.5)
    np.testing.assert_allclose(tensor[1], (0.2 - 0.25) / 0.25, rtol=1e-6)
    np.testing.assert_allclose(tensor[2], 0.4, rtol=1e-6)


def test_preprocess_bgr_order_swaps_channels() -> None:
    image = np.zeros((4, 6, 3), dtype=np.uint8)
    image[..., 0] = 255  # red
    prep = Preprocessing(input_size=(4, 6), mean=(0, 0, 0), std=(1, 1, 1), color_order="BGR")
    tensor = preprocess(image, prep)
    assert tensor[2].min() == 1.0 and tensor[0].max() == 0.0


def test_preprocess_uses_the_pixel_scale_from_metadata() -> None:
    image = np.full((4, 6, 3), 200, dtype=np.uint8)
    prep = Preprocessing(input_size=(4, 6), mean=(0, 0, 0), std=(1, 1, 1), pixel_scale=1.0)
    assert preprocess(image, prep).max() == 200.0  # no guessing of a /255


@pytest.mark.parametrize("resize", ["bilinear", "area"])
@pytest.mark.parametrize("shape", [(40, 60), (3, 2), (4, 6), (1000, 7)])
def test_preprocess_resizes_any_size_to_the_input_size(resize: str, shape: tuple) -> None:
    prep = Preprocessing(input_size=(4, 6), mean=(0, 0, 0), std=(1, 1, 1), resize=resize)
    image = np.full((*shape, 3), 128, dtype=np.uint8)
    tensor = preprocess(image, prep)
    assert tensor.shape == (3, 4, 6)
    np.testing.assert_allclose(tensor, 128 / 255, rtol=1e-6)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ([[1, 2, 3]], "must be a numpy array, got list"),
        (np.zeros((4, 6), np.uint8), "must be (H, W, 3) uint8 RGB, got (4, 6) uint8"),
        (np.zeros((4, 6, 4), np.uint8), "got (4, 6, 4) uint8"),
        (np.zeros((4, 6, 3), np.float32), "got (4, 6, 3) float32"),
        (np.zeros((4, 6, 3), np.uint16), "got (4, 6, 3) uint16"),
        (np.zeros((0, 6, 3), np.uint8), "must not be empty"),
    ],
)
def test_check_image_rejects_wrong_arrays(image: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        check_image(image)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("raw", "threshold", "low", "high", "expected"),
    [
        (5.0, 5.0, 0.0, 10.0, 0.5),  # the threshold maps to 0.5
        (10.0, 5.0, 0.0, 10.0, 1.0),
        (0.0, 5.0, 0.0, 10.0, 0.0),
        (7.0, 5.0, 0.0, 10.0, 0.7),
        (100.0, 5.0, 0.0, 10.0, 1.0),  # clipped
        (-100.0, 5.0, 0.0, 10.0, 0.0),
        (3.0, 2.0, 2.0, 2.0, 1.0),  # zero range: above, below, equal
        (1.0, 2.0, 2.0, 2.0, 0.0),
        (2.0, 2.0, 2.0, 2.0, 0.5),
    ],
)
def test_normalize_follows_anomalib_rule(raw, threshold, low, high, expected) -> None:
    assert float(normalize(raw, threshold, low, high)) == pytest.approx(expected, abs=1e-6)


def test_normalize_score_and_map_use_their_own_stats() -> None:
    stats = Normalization(
        image_threshold_raw=2.0, pixel_threshold_raw=1.0, image_min=0.0, image_max=4.0,
        pixel_min=0.0, pixel_max=2.0,
    )  # fmt: skip
    assert normalize_score(2.0, stats) == pytest.approx(0.5)
    raw_map = np.array([[0.0, 1.0], [2.0, 3.0]], dtype=np.float32)
    np.testing.assert_allclose(normalize_map(raw_map, stats), [[0.0, 0.5], [1.0, 1.0]])


def test_resize_map_keeps_range_and_dtype() -> None:
    small = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    big = resize_map(small, 30, 20)
    assert big.shape == (30, 20) and big.dtype == np.float32
    assert big.min() >= 0.0 and big.max() <= 1.0


@pytest.mark.parametrize("color_order", ["RGB", "BGR"])
def test_preprocess_table_equals_the_float_formula_bit_for_bit(color_order: str) -> None:
    image = np.random.default_rng(3).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    prep = Preprocessing(
        input_size=(5, 7), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
        color_order=color_order,
    )  # fmt: skip
    source = image[:, :, ::-1] if color_order == "BGR" else image
    expected = (source.astype(np.float32) * np.float32(prep.pixel_scale)) - np.asarray(
        prep.mean, dtype=np.float32
    )
    expected = (expected / np.asarray(prep.std, dtype=np.float32)).transpose(2, 0, 1)
    tensor = preprocess(image, prep)
    assert tensor.flags.c_contiguous and tensor.dtype == np.float32
    np.testing.assert_array_equal(tensor, expected)
