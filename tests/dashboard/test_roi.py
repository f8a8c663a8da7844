"""The ROI page's functions: overlay, JSON round trip, audited save into the product config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inspection.core.errors import ConfigError, RegistryError
from inspection.core.registry import Registry
from inspection.core.roi import RoiSpec
from inspection.dashboard import roi
from inspection.training.config import load_product_config

SQUARE = ((10.0, 10.0), (90.0, 10.0), (90.0, 90.0), (10.0, 90.0))
PRODUCT_YAML = """# a product with comments that must survive
data: datasets/p
reference: ref.png
roi:
  reference_size: [100, 100]
  include:
    - [[0,0],[50,0],[50,50]]
models:
  patchcore:
    image_size: [64, 64]   # kept
"""


@pytest.fixture
def configs(tmp_path: Path) -> Path:
    (tmp_path / "products").mkdir()
    (tmp_path / "products" / "p.yaml").write_text(PRODUCT_YAML)
    (tmp_path / "products" / "q.yaml").write_text("data: datasets/q\n")
    return tmp_path


def test_overlay_dims_outside_and_keeps_inside() -> None:
    image = np.full((200, 200, 3), 200, np.uint8)
    shown = roi.overlay(image, RoiSpec((100, 100), include=(SQUARE,)), max_side=100)
    assert shown.shape == (100, 100, 3)
    assert shown[50, 50].tolist() == [200, 200, 200] and shown[2, 2].max() < 100
    assert roi.overlay(image, None, max_side=100).shape == (100, 100, 3)


def test_json_round_trip_and_errors() -> None:
    spec = RoiSpec((100, 100), include=(SQUARE,), exclude=(((40, 40), (60, 40), (50, 60)),))
    assert roi.parse_roi(roi.roi_json(spec)) == spec
    with pytest.raises(ConfigError, match="not valid JSON"):
        roi.parse_roi("{oops")
    with pytest.raises(ConfigError, match="at least 3 points"):
        roi.parse_roi('{"reference_size": [9, 9], "include": [[[0, 0], [1, 1]]]}')


def test_save_replaces_the_block_keeps_comments_and_audits(configs: Path, tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")
    spec = RoiSpec((100, 100), include=(SQUARE,))
    path = roi.save_roi("p", spec, registry, actor="ana", reason="fixture moved", directory=configs)
    text = path.read_text()
    assert "# a product with comments" in text and "# kept" in text
    assert load_product_config("p", configs).roi == spec
    assert load_product_config("p", configs).models["patchcore"]["image_size"] == [64, 64]
    (event,) = registry.events("p")
    assert (event["action"], event["actor"], event["include"]) == ("roi", "ana", 1)
    roi.save_roi("q", spec, registry, actor="ana", reason="first ROI", directory=configs)
    assert load_product_config("q", configs).roi == spec
    assert roi.products_with_reference(configs) == ["p"]


def test_save_needs_who_and_why(configs: Path, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="who"):
        roi.save_roi("p", RoiSpec((9, 9)), Registry(tmp_path / "r"), actor=" ", reason="x",
                     directory=configs)  # fmt: skip
