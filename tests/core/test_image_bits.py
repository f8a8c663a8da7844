"""The bit-depth rule of ``core.images``: a 16-bit image holding N significant bits."""

from __future__ import annotations

import logging
from collections import Counter

import cv2
import numpy as np
import pytest

from inspection.core import images
from inspection.core.errors import ImageDecodeError
from inspection.core.images import (
    check_source_bits,
    clipped_images,
    decode_image,
    decode_reduced,
    narrow_to_8_bits,
    read_image,
    read_reduced,
)

TWELVE_BIT = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 4096).astype(np.uint16)


def _encode(array: np.ndarray, suffix: str = ".png") -> bytes:
    ok, buffer = cv2.imencode(suffix, array)
    assert ok
    return buffer.tobytes()


@pytest.mark.parametrize(
    ("value", "bits", "expected"),
    [(4095, 12, 255), (2048, 12, 128), (0, 12, 0), (15, 12, 0), (16, 12, 1), (4095, 16, 15),
     (65535, 16, 255), (1023, 10, 255), (512, 10, 128), (255, 8, 255), (16383, 14, 255)],
)  # fmt: skip
def test_the_rule_keeps_the_top_eight_of_the_declared_bits(
    value: int, bits: int, expected: int
) -> None:
    narrowed, clipped = narrow_to_8_bits(np.array([value], np.uint16), bits)
    assert narrowed.dtype == np.uint8
    assert (int(narrowed[0]), clipped) == (expected, 0)


@pytest.mark.parametrize("suffix", [".png", ".tiff"])
def test_a_12_bit_image_reads_as_its_8_bit_equivalent(suffix: str) -> None:
    out = decode_image(_encode(TWELVE_BIT, suffix), bits=12)
    assert out.shape == (64, 64, 3)
    assert np.array_equal(out[:, :, 0], (TWELVE_BIT >> 4).astype(np.uint8))
    assert out[:, :, 0].max() == 255


def test_the_default_is_the_high_byte_as_before() -> None:
    deep = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    data = _encode(deep)
    assert np.array_equal(decode_image(data)[:, :, 0], (deep >> 8).astype(np.uint8))
    assert np.array_equal(decode_image(data), decode_image(data, bits=16))


@pytest.mark.parametrize("array", [
    (np.arange(64 * 64 * 3) % 251).astype(np.uint8).reshape(64, 64, 3),
    (np.arange(64 * 64) % 256).astype(np.uint8).reshape(64, 64),
])  # fmt: skip
def test_8_bit_images_ignore_the_setting(array: np.ndarray) -> None:
    data = _encode(array)
    assert np.array_equal(decode_image(data, bits=12), decode_image(data))


def test_values_above_the_declared_bits_are_clipped_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(images, "_SEEN", Counter())
    over = TWELVE_BIT.copy()
    over[0, :5] = [4096, 5000, 40000, 65535, 4095]
    with caplog.at_level(logging.WARNING, logger="inspection.core.images"):
        first = decode_reduced(_encode(over), bits=12, name="cam/0001.png")
        second = decode_reduced(_encode(over), bits=12, name="cam/0002.png")
    assert first.clipped_pixels == second.clipped_pixels == 4
    assert first.image[0, :5, 0].tolist() == [255, 255, 255, 255, 255]
    assert clipped_images() == 2
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 1
    assert "cam/0001.png: 4 pixels above 4095 (the 12-bit maximum) clipped to 255" in logged[0]


def test_in_range_images_count_no_clipping() -> None:
    assert decode_reduced(_encode(TWELVE_BIT), bits=12).clipped_pixels == 0
    assert decode_reduced(_encode(TWELVE_BIT << 4)).clipped_pixels == 0  # 16 bits: none


def test_a_reduced_decode_narrows_before_it_resizes() -> None:
    big = np.tile(TWELVE_BIT, (4, 4))  # 256 x 256
    eight = (big >> 4).astype(np.uint8)
    twelve = decode_reduced(_encode(big), work_side=64, bits=12)
    assert twelve.reduced and twelve.source_size == (256, 256)
    assert np.array_equal(twelve.image, decode_reduced(_encode(eight), work_side=64).image)


def test_read_functions_take_the_bits(tmp_path) -> None:
    path = tmp_path / "frame.png"
    path.write_bytes(_encode(TWELVE_BIT))
    expected = (TWELVE_BIT >> 4).astype(np.uint8)
    assert np.array_equal(read_image(path, bits=12)[:, :, 0], expected)
    assert np.array_equal(read_reduced(path, bits=12).image[:, :, 0], expected)
    assert read_image(path)[:, :, 0].max() == 15  # the default: the high byte


def test_16_bit_colour_is_refused_below_16_bits_not_read_dark() -> None:
    colour = np.dstack([TWELVE_BIT] * 3)
    with pytest.raises(ImageDecodeError, match="16-bit colour image cannot be read at 12"):
        decode_image(_encode(colour), bits=12, name="cam.png")
    assert decode_image(_encode(colour)).max() == 15  # the default reads it as before


@pytest.mark.parametrize("bits", [7, 17, 0, True, 12.0, "12"])
def test_bits_outside_8_to_16_are_refused(bits: object) -> None:
    with pytest.raises(ValueError, match="an integer from 8 to 16"):
        check_source_bits(bits)
    with pytest.raises(ValueError, match="an integer from 8 to 16"):
        decode_image(_encode(TWELVE_BIT), bits=bits)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("values", "bits", "warned"),
    [
        (np.full((32, 32), 200, np.uint16), 16, True),  # 8-bit values in a 16-bit file
        (np.full((32, 32), 200, np.uint16), 8, False),  # declared: read as they are
        (np.zeros((32, 32), np.uint16), 16, False),  # a truly black frame: nothing to say
        (TWELVE_BIT, 12, False),
    ],
    ids=["8-bit-values-at-16", "declared-8", "black", "12-bit-at-12"],
)
def test_a_16_bit_image_that_reads_as_black_is_named_once(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    values: np.ndarray,
    bits: int,
    warned: bool,
) -> None:
    """It was judged as a black frame (NG) with no word of why at the station."""
    monkeypatch.setattr(images, "_SEEN", Counter())
    with caplog.at_level(logging.WARNING, logger="inspection.core.images"):
        for _ in range(2):
            decode_image(_encode(values), name="cam1.png", bits=bits)
    said = [r.getMessage() for r in caplog.records if "reads as black" in r.getMessage()]
    assert len(said) == (1 if warned else 0)
    if warned:
        assert said[0].startswith("cam1.png: a 16-bit image whose values all lie below 256")
        assert "set image_bits" in said[0]
