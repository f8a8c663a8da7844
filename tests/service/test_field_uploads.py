"""Uploads as cameras and 3D sensors send them (issue #90): a frame with a zero alpha channel
or stored turned with an EXIF Orientation tag is judged as the upright colour part it is; a
height map the bundle declares no range for is refused naming the key."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from .helpers import Bundles, serve, serving_registry, station_config

pytestmark = pytest.mark.slow


def _rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _png(array: np.ndarray, **params: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, "PNG", **params)
    return buffer.getvalue()


def test_zero_alpha_and_turned_uploads_are_judged_as_the_upright_part(
    tmp_path: Path, bundles: Bundles, sample_images: dict[str, bytes]
) -> None:
    """Before: the zero-alpha frame decoded black and was refused as "grey image ... gain,
    exposure or lighting changed?"; the turned one was judged sideways."""
    rgb = _rgb(sample_images["defect0"])
    exif = Image.Exif()
    exif[0x0112] = 6
    uploads = {
        "plain": sample_images["defect0"],
        "zero-alpha": _png(np.dstack([rgb, np.zeros(rgb.shape[:2], np.uint8)])),
        "turned": _png(np.rot90(rgb, 1), exif=exif),
    }
    serving_registry(tmp_path / "registry", bundles)
    with serve(station_config(tmp_path)) as served:
        answers = {name: served.inspect(data, request_id=name) for name, data in uploads.items()}
    assert {name: a.status_code for name, a in answers.items()} == dict.fromkeys(uploads, 201)
    judged = {name: (a.json()["verdict"], a.json()["score"]) for name, a in answers.items()}
    assert judged["zero-alpha"] == judged["turned"] == judged["plain"]


def test_a_height_map_without_a_declared_range_is_refused_naming_the_key(
    tmp_path: Path, bundles: Bundles
) -> None:
    ok, buffer = cv2.imencode(".tiff", np.full((64, 64), -250, np.int16))
    assert ok
    serving_registry(tmp_path / "registry", bundles)
    with serve(station_config(tmp_path)) as served:
        refused = served.inspect(buffer.tobytes(), request_id="height-1")
        assert served.station.store.count_inspections() == 0
    assert refused.status_code == 400, refused.text
    assert refused.json()["detail"] == (
        "upload: a signed 16-bit image (a height map, depth or float image) is read over the "
        "range its values mean, and none is declared; set image_range: [low, high] (in the "
        "file's units) in the product's config (products/<product>.yaml)"
    )
