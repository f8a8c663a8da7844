"""An upload unlike the live bundle's training images is refused (422, counted, logged, nothing
stored); with ``input_check: warn`` it is judged and counted as a warning."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .helpers import Bundles, serve, serving_registry, station_config

pytestmark = pytest.mark.slow


def _grey_png(data: bytes) -> bytes:
    """The same part through a mono camera: one channel's worth, stored as grey."""
    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("L").save(buffer, "PNG")
    return buffer.getvalue()


def _metric(text: str, outcome: str) -> float:
    prefix = f'inspection_input_domain_total{{outcome="{outcome}",product="brick"}} '
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(lines[0].split()[-1]) if lines else 0.0


def test_a_grey_upload_under_a_colour_bundle_is_refused(
    tmp_path: Path, bundles: Bundles, sample_images, caplog
) -> None:
    serving_registry(tmp_path / "registry", bundles)
    with serve(station_config(tmp_path)) as served, caplog.at_level(logging.WARNING):
        assert served.inspect(sample_images["good0"]).status_code == 201
        refused = served.inspect(_grey_png(sample_images["good0"]), request_id="grey-1")
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"].startswith("grey image (its three channels are equal")
        assert "the bundle was trained on colour images" in refused.json()["detail"]
        assert served.station.store.count_inspections() == 1  # no verdict stored
        assert _metric(served.ops("/metrics").text, "refused") == 1.0
    assert "brick: upload refused: grey image" in caplog.text


def test_a_swapped_channel_order_is_refused_never_judged(
    tmp_path: Path, bundles: Bundles, sample_images
) -> None:
    rgb = np.asarray(Image.open(io.BytesIO(sample_images["good0"])).convert("RGB"))
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb[..., ::-1])).save(buffer, "PNG")
    serving_registry(tmp_path / "registry", bundles)
    with serve(station_config(tmp_path)) as served:
        refused = served.inspect(buffer.getvalue(), request_id="bgr-1")
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"].startswith("image intensities unlike the training")
        assert "red and blue channels are swapped (BGR sent for RGB)" in refused.json()["detail"]
        assert served.station.store.count_inspections() == 0


def test_warn_judges_the_upload_and_counts_it(tmp_path: Path, bundles: Bundles, sample_images):
    serving_registry(tmp_path / "registry", bundles)
    with serve(station_config(tmp_path, input_check="warn")) as served:
        judged = served.inspect(_grey_png(sample_images["good0"]))
        assert judged.status_code == 201, judged.text
        assert judged.json()["verdict"] in ("OK", "NG")
        metrics = served.ops("/metrics").text
        assert _metric(metrics, "warned") == 1.0 and _metric(metrics, "refused") == 0.0


def _sixteen_bit_tiff(data: bytes, shift: int) -> bytes:
    """The same part from a mono camera writing 16-bit files: grey levels << ``shift``
    (4: 12-bit values, 0..4095; 8: the full 16-bit range)."""
    grey = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.uint16) << shift
    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, "TIFF")
    return buffer.getvalue()


def test_a_camera_at_the_wrong_bit_depth_is_refused_never_judged(
    tmp_path: Path, bundles: Bundles, sample_images
) -> None:
    serving_registry(tmp_path / "registry", bundles)
    with serve(station_config(tmp_path)) as served:
        refused = served.inspect(_sixteen_bit_tiff(sample_images["good0"], 4), request_id="b12")
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"].startswith("wrong camera bit depth: 16-bit image")
        assert "image_bits: 16" in refused.json()["detail"]
        assert served.station.store.count_inspections() == 0
