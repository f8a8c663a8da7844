"""Bad and unusual image files at the station: a specific error, or a documented conversion."""

from __future__ import annotations

import io
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspection.core.errors import ImageDecodeError
from inspection.core.images import read_image
from inspection.runtime.bounds import work_size
from inspection.runtime.inspector import Inspector
from inspection.runtime.paths import inspect_paths

pytestmark = pytest.mark.slow


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _huge_png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (a decompression bomb), with almost no data."""
    data = bytearray(_png(np.zeros((8, 8, 3), np.uint8)))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(data)


RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 255, (96, 80, 3), dtype=np.uint8)

BAD_FILES = [
    ("text.png", b"this is not an image at all", "not an image (unrecognised format)"),
    ("empty.png", b"", "empty file (0 bytes)"),
    ("truncated.png", _png(RGB)[:200], "truncated or corrupt image"),
    ("truncated.jpg", _jpeg(RGB)[:300], "truncated or corrupt image"),
    ("over-limit.png", _huge_png_header(7000, 7000), "above the limit of 40000000"),
    ("bomb.png", _huge_png_header(20000, 20000), "image too large"),
]

CONVERTED = [
    ("gray.png", _png(RGB[..., 0]), (96, 80)),
    ("rgba.png", _png(np.dstack([RGB, np.full((96, 80), 128, np.uint8)])), (96, 80)),
    ("gray16.png", _png(RGB[..., 0].astype(np.uint16) * 257), (96, 80)),
    ("small.png", _png(RGB[:40, :30]), (40, 30)),
    ("wide.jpg", _jpeg(np.tile(RGB, (1, 5, 1))), (96, 400)),
    ("large.png", _png(np.tile(RGB, (25, 30, 1))), (2400, 2400)),
]


@pytest.fixture(scope="module")
def inspector(fp32_bundle: Path) -> Inspector:
    """Decoding is under test here: grey, tiny and wide files are judged, not held against the
    bundle's input domain (tests/runtime/test_input_domain.py refuses them)."""
    return Inspector.from_bundle(fp32_bundle, input_check="off")


@pytest.mark.parametrize(("name", "data", "message"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_file_is_an_error_outcome_not_a_crash(inspector, tmp_path, name, data, message) -> None:
    bad = tmp_path / name
    bad.write_bytes(data)
    good = tmp_path / "zz_good.png"
    good.write_bytes(_png(RGB))
    with pytest.raises(ImageDecodeError, match=re.escape(message)):
        read_image(bad)
    outcomes = inspect_paths(inspector, [bad, good], batch_size=4)
    assert [o.path.name for o in outcomes] == [name, "zz_good.png"]
    assert not outcomes[0].ok and message in outcomes[0].error and str(bad) in outcomes[0].error
    assert outcomes[1].ok


@pytest.mark.parametrize(("name", "data", "shape"), CONVERTED, ids=[c[0] for c in CONVERTED])
def test_converted_images_are_inspected_at_their_own_size(inspector, tmp_path, name, data, shape):
    path = tmp_path / name
    path.write_bytes(data)
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (*shape, 3)
    result = inspector.inspect(image)
    # judged at the image's own size up to the working size, on a working copy above it
    side = inspector.camera.work_side(inspector.metadata.preprocessing.input_size)
    judged = work_size(shape, side)
    assert result.anomaly_map.shape == judged and result.mask.shape == judged
    assert result.camera_size == (None if judged == shape else shape)


def test_missing_file_is_an_error_outcome(inspector, tmp_path) -> None:
    outcomes = inspect_paths(inspector, [tmp_path / "nope.png"])
    assert not outcomes[0].ok and "cannot read file" in outcomes[0].error


@pytest.mark.parametrize(
    "array",
    [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8), np.zeros((10, 10, 3), float)],
)
def test_wrong_arrays_are_rejected_by_inspect(inspector, array) -> None:
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8 RGB"):
        inspector.inspect(array)
