from __future__ import annotations

import io
import threading
import warnings

import numpy as np
import pytest
from PIL import Image, ImageFile

from inspection.core.errors import ImageDecodeError
from inspection.core.images import (
    decode_image,
    decode_reduced,
    defect_pixels,
    is_binary_mask,
    list_images,
    mask_levels,
    probe_image,
    read_mask,
)


def _encode(array: np.ndarray, fmt: str = "PNG", mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format=fmt)
    return buffer.getvalue()


RGB = (np.arange(32 * 48 * 3) % 251).astype(np.uint8).reshape(32, 48, 3)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file (0 bytes)"),
        (b"this is not an image at all", "not an image (unrecognised format)"),
        (_encode(RGB)[:200], "truncated or corrupt image"),
        (_encode(RGB, "JPEG")[:300], "truncated or corrupt image"),
    ],
)
def test_bad_bytes_raise_specific_errors(data: bytes, message: str) -> None:
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data, name="upload")
    assert str(info.value).startswith(f"upload: {message}")


def test_too_many_pixels_is_refused() -> None:
    with pytest.raises(ImageDecodeError, match="above the limit of 1000"):
        decode_image(_encode(RGB), max_pixels=1000)


class _OpeningWaits(ImageFile.ImageFile):
    """A format whose header claims 10,000 x 10,000 px (Pillow warns of a decompression bomb,
    below its error limit) and whose opening waits until another thread ignores warnings."""

    format = "WAITS"
    opening = threading.Event()
    ignoring = threading.Event()

    def _open(self) -> None:
        if self.fp.read(5) != b"WAITS":
            raise SyntaxError("not a WAITS file")
        self._mode, self._size = "L", (10_000, 10_000)
        self.opening.set()
        assert self.ignoring.wait(10), "the other thread never entered catch_warnings"


def test_the_bomb_guard_holds_while_another_thread_ignores_warnings(monkeypatch) -> None:
    # warnings filters are one per process: another thread ignoring warnings inside
    # catch_warnings (as NNCF's quantisation does) while an image opens must not let a bomb through
    monkeypatch.setitem(Image.OPEN, "WAITS", (_OpeningWaits, None))
    monkeypatch.setattr(Image, "ID", [*Image.ID, "WAITS"])
    _OpeningWaits.opening.clear()
    _OpeningWaits.ignoring.clear()
    done = threading.Event()

    def ignore_warnings() -> None:
        _OpeningWaits.opening.wait(10)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _OpeningWaits.ignoring.set()
            done.wait(10)

    filters = list(warnings.filters)
    other = threading.Thread(target=ignore_warnings)
    other.start()
    try:
        with pytest.raises(ImageDecodeError, match="image too large: 10000x10000"):
            decode_reduced(b"WAITS", max_pixels=200_000_000, formats=("WAITS",), name="bomb")
    finally:
        done.set()
        other.join()
    assert warnings.filters == filters  # and decoding left no filter behind


def test_rgb_round_trips() -> None:
    assert np.array_equal(decode_image(_encode(RGB)), RGB)


def test_grayscale_is_replicated_to_three_channels() -> None:
    gray = RGB[:, :, 0]
    out = decode_image(_encode(gray))
    assert out.shape == (32, 48, 3) and out.dtype == np.uint8
    assert np.array_equal(out[:, :, 1], gray)


def test_rgba_drops_alpha_onto_black() -> None:
    rgba = np.dstack([RGB, np.full((32, 48), 255, np.uint8)])
    rgba[0, 0, 3] = 0
    out = decode_image(_encode(rgba))
    assert np.array_equal(out[1:, :], RGB[1:, :])
    assert out[0, 0].tolist() == [0, 0, 0]


def test_16_bit_is_scaled_to_8_bit() -> None:
    deep = (np.arange(32 * 48, dtype=np.uint16).reshape(32, 48) * 40).astype(np.uint16)
    out = decode_image(_encode(deep))
    assert out.dtype == np.uint8
    assert np.array_equal(out[:, :, 0], (deep >> 8).astype(np.uint8))


@pytest.mark.parametrize(("width", "height"), [(2000, 1), (1, 2000)])
def test_side_limit_is_checked_from_the_header(width: int, height: int) -> None:
    data = _encode(np.zeros((height, width, 3), dtype=np.uint8))
    with pytest.raises(ImageDecodeError, match="each side must be 1 to 1000 pixels"):
        decode_image(data, max_side=1000)


def test_formats_outside_the_allow_list_are_refused() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "GIF")
    assert decode_image(buffer.getvalue()).shape == (8, 8, 3)
    with pytest.raises(ImageDecodeError, match=r"accepted format \(PNG, JPEG\)"):
        decode_image(buffer.getvalue(), formats=("PNG", "JPEG"))


def test_probe_image_reads_the_size_from_the_header_alone(tmp_path) -> None:
    path = tmp_path / "part.png"
    path.write_bytes(_encode(np.zeros((30, 40, 3), np.uint8)))
    assert probe_image(path) == (40, 30)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(path.read_bytes()[:60])  # header intact, pixels cut off
    assert probe_image(truncated) == (40, 30)


@pytest.mark.parametrize(("content", "message"), [(b"", "empty file"), (b"hello", "not an image")])
def test_probe_image_names_what_is_wrong(tmp_path, content: bytes, message: str) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(content)
    with pytest.raises(ImageDecodeError, match=message):
        probe_image(path)
    with pytest.raises(ImageDecodeError, match="cannot read file"):
        probe_image(tmp_path / "missing.png")


SHAPE = np.zeros((20, 30), bool)
SHAPE[4:12, 6:20] = True
SHAPE[15, 25] = True


def _palette_mask() -> bytes:
    """Index 0 is red (defect), index 1 black: read through the palette, not as indices."""
    image = Image.fromarray(np.where(SHAPE, 0, 1).astype(np.uint8), mode="P")
    image.putpalette([200, 0, 0, 0, 0, 0])
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _rgba_mask() -> np.ndarray:
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[SHAPE] = (255, 0, 0, 255)
    rgba[~SHAPE] = (255, 255, 255, 0)  # transparent white background is background
    return rgba


MASK_ENCODINGS = {
    "L 0/255": _encode(SHAPE.astype(np.uint8) * 255),
    "L 0/1": _encode(SHAPE.astype(np.uint8)),
    "mode 1": _encode(SHAPE),  # bool arrays become 1-bit images
    "RGB green on black": _encode(
        np.dstack([np.zeros_like(SHAPE), SHAPE, np.zeros_like(SHAPE)]).astype(np.uint8) * 255
    ),
    "RGBA red on transparent": _encode(_rgba_mask()),
    "16-bit 0/65535": _encode(SHAPE.astype(np.uint16) * 65535),
    "16-bit 0/255": _encode(SHAPE.astype(np.uint16) * 255),
    "16-bit 0/1": _encode(SHAPE.astype(np.uint16)),
    "palette": _palette_mask(),
    "TIFF 0/1": _encode(SHAPE.astype(np.uint8), "TIFF"),
}


@pytest.mark.parametrize("data", MASK_ENCODINGS.values(), ids=MASK_ENCODINGS.keys())
def test_every_mask_encoding_decodes_to_the_same_mask(tmp_path, data: bytes) -> None:
    levels = mask_levels(data)
    assert levels.shape == SHAPE.shape and is_binary_mask(levels)
    assert np.array_equal(defect_pixels(levels), SHAPE)
    path = tmp_path / "mask.png"
    path.write_bytes(data)
    assert np.array_equal(read_mask(path), SHAPE)
    resized = read_mask(path, (40, 60))
    assert resized.dtype == bool and np.array_equal(resized[::2, ::2], SHAPE)


def test_16_bit_mask_keeps_its_levels() -> None:
    assert mask_levels(MASK_ENCODINGS["16-bit 0/255"]).max() == 255  # not 255 >> 8 == 0


@pytest.mark.parametrize(
    ("levels", "binary"),
    [
        ([0, 0], True),  # empty: binary (the check reports it as empty)
        ([7, 7], True),  # all defect
        ([0, 1], True),
        ([0, 65535], True),
        ([1, 255], False),  # no background level
        ([0, 128, 255], False),  # anti-aliased edge
    ],
)
def test_is_binary_mask(levels: list[int], binary: bool) -> None:
    assert is_binary_mask(np.asarray(levels, np.uint16)) is binary


def test_mask_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(ImageDecodeError, match=r"m\.png: empty file"):
        mask_levels(b"", name="m.png")
    with pytest.raises(ImageDecodeError, match="not an image"):
        mask_levels(b"hello")
    with pytest.raises(ImageDecodeError, match="cannot read file"):
        read_mask(tmp_path / "missing.png")
    assert read_mask(None) is None
    assert read_mask(None, (3, 4)).tolist() == np.zeros((3, 4), bool).tolist()


def test_list_images_takes_any_case_and_skips_hidden_files(tmp_path) -> None:
    for name in ("b.PNG", "a.jpg", "._a.jpg", ".hidden.png", "Thumbs.db", ".DS_Store", "c.TiFf"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "d.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.TiFf"]
    assert list_images(tmp_path / "missing") == []


def test_jpeg_noise_near_zero_stays_background() -> None:
    """A mask saved as JPEG: faint levels around the shape are compression noise, not defect."""
    levels = np.where(SHAPE, 250, 0).astype(np.uint8)
    noisy = levels.copy()
    noisy[~SHAPE] = np.random.default_rng(0).integers(0, 6, int((~SHAPE).sum()))
    assert np.array_equal(defect_pixels(noisy), SHAPE)
    assert not defect_pixels(np.zeros((4, 4), np.uint8)).any()
