"""A station serving a tiled bundle judges the upload on its tiles at full resolution (it used
to load every bundle with the plain Inspector, which squeezes the image into one tile)."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from inspection.core.bundle import read_bundle_metadata, write_bundle_metadata
from inspection.core.registry import Registry
from inspection.runtime.tiled import TiledInspector
from tests.runtime.test_tiled import _part, _write_bundle

from .helpers import PRODUCT, serve, station_config


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_station_judges_a_tiled_bundle_on_its_tiles(tmp_path: Path) -> None:
    bundle = _write_bundle(tmp_path / "bundle")
    write_bundle_metadata(bundle, replace(read_bundle_metadata(bundle), product=PRODUCT))
    registry = Registry(tmp_path / "registry")
    registry.bundles.add_bundle(PRODUCT, bundle, "v0001-fp32")
    registry.journal.promote(PRODUCT, "v0001-fp32", actor="tests", reason="tiled")
    part = _part((100, 80, 103, 83), size=(400, 320))  # a 3x3 px spot
    expected = TiledInspector.from_bundle(bundle).inspect(part)
    with serve(station_config(tmp_path)) as served:
        response = served.inspect(_png(part))
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["verdict"] == expected.verdict == "NG"
        assert abs(body["score"] - expected.score) < 1e-6  # the plain Inspector: OK, ~0.16
