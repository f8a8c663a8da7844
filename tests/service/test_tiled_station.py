"""A station serving a tiled bundle judges the upload on its tiles at full resolution (it used
to load every bundle with the plain Inspector, which squeezes the image into one tile), and
answers an image smaller than one tile with a 422 that names the keys (#90 item 3; it answered
500). Both tests ask the one station below."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspection.core.bundle import read_bundle_metadata, write_bundle_metadata
from inspection.core.registry import Registry
from inspection.runtime.tiled import TiledInspector
from tests.runtime.test_tiled import _part, _write_bundle

from .helpers import PRODUCT, Served, serve, station_config


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tests/runtime/test_tiled.py``'s tiled mean bundle (32 px tiles at scale 0.5), for
    ``PRODUCT``."""
    bundle = _write_bundle(tmp_path_factory.mktemp("tiled") / "bundle")
    write_bundle_metadata(bundle, replace(read_bundle_metadata(bundle), product=PRODUCT))
    return bundle


@pytest.fixture(scope="module")
def served(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A station whose live bundle is ``bundle``."""
    root = tmp_path_factory.mktemp("tiled-station")
    registry = Registry(root / "registry")
    registry.bundles.add_bundle(PRODUCT, bundle, "v0001-fp32")
    registry.journal.promote(PRODUCT, "v0001-fp32", actor="tests", reason="tiled")
    with serve(station_config(root)) as running:
        yield running


def test_a_station_judges_a_tiled_bundle_on_its_tiles(bundle: Path, served: Served) -> None:
    part = _part((100, 80, 103, 83), size=(400, 320))  # a 3x3 px spot
    expected = TiledInspector.from_bundle(bundle).inspect(part)
    response = served.inspect(_png(part))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["verdict"] == expected.verdict == "NG"
    assert abs(body["score"] - expected.score) < 1e-6  # the plain Inspector: OK, ~0.16


def test_a_tiled_station_refuses_an_image_smaller_than_a_tile_by_name(served: Served) -> None:
    """A 40x40 image at scale 0.5 is 20x20, below the 32 px tile: it answered 500."""
    response = served.inspect(_png(np.full((40, 40, 3), 40, np.uint8)))
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == (
        "image is 40x40 px, 20x20 at the tiling scale 0.5: smaller than one tile 32x32 "
        "(tiling.tile_size); lower tiling.tile_size or raise tiling.scale in the product's "
        "config, or take the image out of the product"
    )
