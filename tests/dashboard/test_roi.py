"""The ROI page's functions: overlay, JSON round trip, audited save into the product config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inspection.core.errors import ConfigError, RegistryError
from inspection.core.product_config import load_product_config
from inspection.core.registry import Registry
from inspection.core.roi import RoiSpec
from inspection.dashboard import roi

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
    (event,) = registry.journal.events("p")
    assert (event["action"], event["actor"]) == ("roi", "ana")
    (decision,) = registry.journal.decisions(
        "p", "roi"
    )  # what a station checks a bundle's ROI against
    assert (decision.value, decision.reason) == (spec.to_mapping(), "fixture moved")
    roi.save_roi("q", spec, registry, actor="ana", reason="first ROI", directory=configs)
    assert load_product_config("q", configs).roi == spec
    assert roi.products_with_reference(configs) == ["p"]


def test_save_needs_who_and_why(configs: Path, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="who"):
        roi.save_roi("p", RoiSpec((9, 9)), Registry(tmp_path / "r"), actor=" ", reason="x",
                     directory=configs)  # fmt: skip


def test_boxes_round_trip_and_clip() -> None:
    spec = roi.roi_from_boxes(
        [
            {"label": "include", "left": -5.4, "top": 10.2, "width": 90, "height": 50},
            {"label": "exclude", "left": 20, "top": 20, "width": 10, "height": 10},
            {"label": "include", "left": 3, "top": 3, "width": 0.2, "height": 9},  # a click
        ],
        (80, 80),
    )
    data = spec.to_mapping()
    assert data["include"] == [[[0, 10], [80, 10], [80, 60], [0, 60]]]  # clipped, click dropped
    assert data["exclude"] == [[[20, 20], [30, 20], [30, 30], [20, 30]]]
    boxes = roi.boxes_of(spec)
    assert boxes == [
        {"label": "include", "left": 0.0, "top": 10.0, "width": 80.0, "height": 50.0},
        {"label": "exclude", "left": 20.0, "top": 20.0, "width": 10.0, "height": 10.0},
    ]
    assert roi.roi_from_boxes(boxes, (80, 80)) == spec


@pytest.mark.parametrize(
    ("boxes", "message"),
    [
        ([], "at least one 'include' box"),
        ([{"label": "keep", "left": 0, "top": 0, "width": 5, "height": 5}], "include or exclude"),
    ],
)
def test_boxes_errors(boxes, message) -> None:
    with pytest.raises(ConfigError, match=message):
        roi.roi_from_boxes(boxes, (10, 10))


def test_a_polygon_that_is_not_a_box_keeps_the_json_editor() -> None:
    spec = roi.parse_roi(
        '{"reference_size": [10, 10], "include": [[[0,0],[9,0],[5,9]]], "exclude": []}'
    )
    assert roi.boxes_of(spec) is None


@pytest.mark.parametrize(("bits", "shown"), [(12, 128), (16, 8)])
def test_the_reference_image_is_read_at_the_products_image_bits(
    tmp_path: Path, bits: int, shown: int
) -> None:
    """A 12-bit camera's reference (values <= 4095 in 16 bits) showed near black under the ROI
    editor: it was read at the default high byte, not at the product's image_bits."""
    from PIL import Image

    from inspection.core.product_config import ProductConfig

    reference = tmp_path / "reference.png"
    Image.fromarray(np.full((8, 8), 2048, np.uint16)).save(reference)
    config = ProductConfig(reference=reference, image_bits=bits)
    assert int(roi.reference_image(config).max()) == shown  # 2048 >> (bits - 8)
