"""Files as cameras, annotators and 3D sensors write them (issue #90): each read by what it
means in ``core.images.decode_reduced``, or refused naming the file and the fix."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from inspection.core.errors import ConfigError, ImageDecodeError
from inspection.core.images import (
    ORIENTATION_TAG,
    decode_image,
    decode_reduced,
    mask_levels,
    probe_image,
    read_mask,
)
from inspection.core.product_config import ProductConfig, load_model_config

UPRIGHT = (np.arange(32 * 48 * 3) % 251).astype(np.uint8).reshape(32, 48, 3)


def _png(array: np.ndarray, **params: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG", **params)
    return buffer.getvalue()


def _tiff(array: np.ndarray) -> bytes:
    """A TIFF as a 3D sensor writes it: OpenCV keeps int16 as signed 16-bit samples."""
    ok, buffer = cv2.imencode(".tiff", array)
    assert ok
    return buffer.tobytes()


# --- demo images: the decode is unchanged for plain 8-bit files -------------------------------


def test_8_bit_rgb_and_grey_pngs_decode_bit_identical() -> None:
    """``make demo``'s images are 8-bit RGB PNGs: every pixel as written, at full size and
    reduced exactly as Pillow's thumbnail did before."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    grey = rgb[:, :, 1].copy()
    assert np.array_equal(decode_image(_png(rgb)), rgb)
    assert np.array_equal(decode_image(_png(grey)), np.repeat(grey[:, :, None], 3, axis=2))
    for array in (rgb, grey):
        reduced = decode_reduced(_png(array), work_side=64)
        expected = Image.fromarray(array)
        expected.thumbnail((64, 48), Image.Resampling.BILINEAR, reducing_gap=2.0)
        assert np.array_equal(reduced.image, np.asarray(expected.convert("RGB")))
        assert reduced.source_size == (96, 128) and not reduced.alpha_ignored


# --- EXIF orientation -------------------------------------------------------------------------

STORED = {  # orientation -> the pixels a camera stores for the upright image
    2: lambda u: u[:, ::-1],
    3: lambda u: u[::-1, ::-1],
    4: lambda u: u[::-1],
    5: lambda u: u.swapaxes(0, 1),
    6: lambda u: np.rot90(u, 1),  # shown after turning 90 degrees clockwise
    8: lambda u: np.rot90(u, -1),
}


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    return exif


@pytest.mark.parametrize("orientation", sorted(STORED))
def test_exif_orientation_reads_upright(orientation: int) -> None:
    stored = np.ascontiguousarray(STORED[orientation](UPRIGHT))
    data = _png(stored, exif=_exif(orientation))
    decoded = decode_reduced(data)
    assert np.array_equal(decoded.image, UPRIGHT)
    assert decoded.source_size == (32, 48)


def test_a_turned_jpeg_lines_up_with_its_upright_mask(tmp_path: Path) -> None:
    """Issue #90 case 8: a JPEG stored turned with an Orientation tag, its mask drawn upright
    (as annotation tools show it): the image reads upright, at full and reduced size, and its
    header size is the upright one."""
    upright = np.zeros((60, 90, 3), np.uint8)
    upright[10:20, 50:80] = 255  # a bright defect in the upper right
    path = tmp_path / "part.jpg"
    Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1))).save(
        path, "JPEG", quality=95, exif=_exif(6)
    )
    mask_path = tmp_path / "part_mask.png"
    Image.fromarray((upright[:, :, 0] > 127).astype(np.uint8) * 255).save(mask_path)
    image = decode_image(path.read_bytes())
    assert image.shape == (60, 90, 3)
    assert np.abs(image.astype(int) - upright).mean() < 3
    mask = read_mask(mask_path, image.shape[:2])
    assert image[mask].mean() > 200 and image[~mask].mean() < 20
    assert probe_image(path) == (90, 60)
    reduced = decode_reduced(path.read_bytes(), work_side=45)
    assert reduced.image.shape == (30, 45, 3) and reduced.source_size == (60, 90)


def test_a_turned_mask_reads_upright() -> None:
    mask = np.zeros((20, 30), np.uint8)
    mask[2:5, 20:28] = 255
    levels = mask_levels(_png(np.ascontiguousarray(np.rot90(mask, 1)), exif=_exif(6)))
    assert np.array_equal(levels, mask)


# --- alpha ------------------------------------------------------------------------------------


def test_a_zero_alpha_over_intact_colour_reads_the_colour_and_says_so() -> None:
    """Issue #90 case 11: frames saved with an alpha channel of 0 (RGB intact) decoded black."""
    rgba = np.dstack([UPRIGHT, np.zeros((32, 48), np.uint8)])
    decoded = decode_reduced(_png(rgba))
    assert np.array_equal(decoded.image, UPRIGHT)
    assert decoded.alpha_ignored and decoded.kind == "RGBA"


def test_a_partial_alpha_is_still_composited_onto_black() -> None:
    rgba = np.dstack([UPRIGHT, np.full((32, 48), 255, np.uint8)])
    rgba[:, :24, 3] = 0
    decoded = decode_reduced(_png(rgba))
    assert not decoded.alpha_ignored
    assert not decoded.image[:, :24].any() and np.array_equal(
        decoded.image[:, 24:], UPRIGHT[:, 24:]
    )


def test_a_mask_with_zero_alpha_keeps_its_drawing() -> None:
    drawn = np.zeros((16, 16), np.uint8)
    drawn[4:8, 4:8] = 255
    rgba = np.dstack([drawn, drawn, drawn, np.zeros_like(drawn)])
    assert np.array_equal(mask_levels(_png(rgba)), drawn)


# --- 16-bit, whichever mode Pillow opens it in ------------------------------------------------


def test_16_bit_grey_reads_at_the_declared_bits_with_its_kind() -> None:
    twelve = np.linspace(0, 4095, 40 * 40).reshape(40, 40).astype(np.uint16)
    decoded = decode_reduced(_png(twelve), bits=12)
    assert decoded.kind == "I;16" and decoded.peak == 4095
    assert np.array_equal(decoded.image[:, :, 0], (twelve >> 4).astype(np.uint8))


@pytest.mark.parametrize("suffix", [".png", ".tiff"])
def test_16_bit_colour_is_refused_below_16_bits(suffix: str) -> None:
    ok, buffer = cv2.imencode(suffix, np.full((8, 8, 3), 4000, np.uint16))
    assert ok
    with pytest.raises(ImageDecodeError) as info:
        decode_image(buffer.tobytes(), bits=12, name="cam.png")
    assert str(info.value) == (
        "cam.png: a 16-bit colour image cannot be read at 12 significant bits (only 16-bit grey "
        "images can); save the camera's frames as 16-bit grey or 8-bit"
    )


# --- height maps: read over the declared range ------------------------------------------------

HEIGHTS = np.linspace(-400, 600, 24 * 32).reshape(24, 32).astype(np.int16)  # µm


def _over(values: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.rint((np.clip(values.astype(float), low, high) - low) * 255 / (high - low))


def test_a_signed_height_map_without_a_declared_range_is_refused_by_name() -> None:
    with pytest.raises(ImageDecodeError) as info:
        decode_image(_tiff(HEIGHTS), name="height.tiff")
    assert str(info.value) == (
        "height.tiff: a signed 16-bit image (a height map, depth or float image) is read over "
        "the range its values mean, and none is declared; set image_range: [low, high] (in the "
        "file's units) in the product's config (products/<product>.yaml)"
    )


def test_a_signed_height_map_reads_over_the_declared_range_not_its_own() -> None:
    """Issue #90 case 7: a part 0.5 mm too high everywhere read as OK, because each image was
    stretched over its own min-max."""
    declared = (-2000.0, 2000.0)
    nominal = decode_reduced(_tiff(HEIGHTS), value_range=declared)
    high = decode_reduced(_tiff(HEIGHTS + 500), value_range=declared)
    assert nominal.kind == "I;16S" and nominal.clipped_pixels == 0
    assert np.array_equal(nominal.image[:, :, 0], _over(HEIGHTS, *declared))
    shift = high.image[:, :, 0].astype(int) - nominal.image[:, :, 0].astype(int)
    assert shift.min() >= 31 and shift.max() <= 32  # 500 µm of 4000 µm: 31.9 levels brighter


def test_a_dropout_pixel_is_filled_and_squeezes_nothing() -> None:
    dropped = HEIGHTS.copy()
    dropped[12, 16] = -32768
    declared = (-500.0, 700.0)
    decoded = decode_reduced(_tiff(dropped), value_range=declared)
    expected = _over(HEIGHTS, *declared)
    keep = np.ones(HEIGHTS.shape, bool)
    keep[12, 16] = False
    assert np.array_equal(decoded.image[:, :, 0][keep], expected[keep])
    neighbours = expected[11:14, 15:18]
    assert neighbours.min() <= decoded.image[12, 16, 0] <= neighbours.max()
    assert decoded.unmeasured_pixels == 1


def test_a_float_image_with_nan_reads_its_measured_pixels() -> None:
    """Issue #90 case 7: a float TIFF with a few NaN pixels decoded all black."""
    depth = np.linspace(0.2, 0.8, 20 * 20, dtype=np.float32).reshape(20, 20)
    depth[3, 3] = depth[10, 12] = np.nan
    decoded = decode_reduced(_png_free_float_tiff(depth), value_range=(0.0, 1.0))
    assert decoded.kind == "F" and decoded.unmeasured_pixels == 2
    measured = np.isfinite(depth)
    grey = decoded.image[:, :, 0]
    assert np.array_equal(grey[measured], _over(np.nan_to_num(depth), 0, 1)[measured])
    assert 40 < grey[3, 3] < 80  # filled from neighbours near 0.2 (51)


def _png_free_float_tiff(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode="F").save(buffer, "TIFF")
    return buffer.getvalue()


def test_an_image_without_any_measurement_is_refused() -> None:
    with pytest.raises(ImageDecodeError, match=r"^depth.tiff: no pixel holds a measurement"):
        decode_image(
            _png_free_float_tiff(np.full((4, 4), np.nan, np.float32)),
            value_range=(0.0, 1.0),
            name="depth.tiff",
        )


def test_values_outside_the_declared_range_are_counted() -> None:
    decoded = decode_reduced(_tiff(HEIGHTS), value_range=(-100.0, 100.0))
    assert decoded.clipped_pixels == int(np.count_nonzero(np.abs(HEIGHTS) > 100))
    assert decoded.image.min() == 0 and decoded.image.max() == 255


@pytest.mark.parametrize("value", [[5, 5], [1], ["a", 2], [0, float("nan")]])
def test_a_bad_image_range_is_refused_by_key(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^image_range: the range"):
        ProductConfig(image_range=value)  # type: ignore[arg-type]


def test_the_products_image_range_reaches_the_model_config(tmp_path: Path) -> None:
    (tmp_path / "products").mkdir()
    (tmp_path / "products" / "gauge.yaml").write_text("image_range: [-2000, 2000]\n")
    config = load_model_config("patchcore", product="gauge", directory=tmp_path)
    assert config.image_range == (-2000.0, 2000.0)
