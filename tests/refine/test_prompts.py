"""Prompts from synthetic anomaly maps: exact boxes and points; config loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inspection.core.errors import ConfigError
from inspection.refine.config import PromptConfig, RefineConfig, load_refine_config
from inspection.refine.prompts import pad_box, prompts_from_map


def _two_blob_map() -> np.ndarray:
    amap = np.zeros((64, 80), np.float32)
    amap[10:20, 10:30] = 0.6  # big region: 10 x 20, two peaks
    amap[14, 13] = 0.9
    amap[15, 26] = 0.8
    amap[40:46, 50:56] = 0.7  # small region: 6 x 6, one peak
    amap[43, 52] = 0.95
    return amap


def test_regions_boxes_and_points_are_exact() -> None:
    amap = _two_blob_map()
    config = PromptConfig(
        box_pad_px=2, box_pad_fraction=0.1, num_positive=2, num_negative=2, negative_offset_px=4
    )
    big, small = prompts_from_map(amap, amap > 0.5, config)
    # big: box (10, 10, 30, 20), pad = max(2, round(0.1 * 20)) = 2
    assert big.box == (8, 8, 32, 22)
    assert big.positive == ((13, 14), (26, 15))
    assert big.area == 200
    # candidates: midpoints (cx=19, top=4), (right=35, cy=14), (19, bottom=25), (left=4, 14)
    assert big.negative == ((19, 4), (35, 14))
    assert small.box == (48, 38, 58, 48)
    assert small.positive == ((52, 43),)  # a single peak: no second point on a plateau
    assert small.negative == ((52, 34), (61, 42))
    points, labels = big.points_and_labels()
    assert points.tolist() == [[13, 14], [26, 15], [19, 4], [35, 14]]
    assert labels.tolist() == [1, 1, 0, 0]


def test_negative_points_skip_anomalous_and_out_of_image_candidates() -> None:
    amap = np.zeros((32, 32), np.float32)
    amap[2:8, 2:8] = 0.9  # region at the top-left corner
    amap[11, 20:] = 0.5  # an anomalous stripe away from the region, through no candidate
    amap[11, :12] = 0.5  # ... and one through the bottom candidates (y = 11)
    config = PromptConfig(box_pad_px=1, box_pad_fraction=0.0, num_negative=8, negative_offset_px=3)
    (prompt,) = prompts_from_map(amap, amap > 0.8, config)
    assert prompt.box == (1, 1, 9, 9)
    # grown box: left=-2, top=-2 (outside), right=11, bottom=11; centre (4, 4)
    assert prompt.negative == ((11, 4),)


def test_min_region_area_and_zero_counts() -> None:
    amap = _two_blob_map()
    config = PromptConfig(min_region_area=50, num_positive=0, num_negative=0)
    (only,) = prompts_from_map(amap, amap > 0.5, config)
    assert only.area == 200 and only.positive == () and only.negative == ()


def test_pad_box_clips_to_image() -> None:
    config = PromptConfig(box_pad_px=5, box_pad_fraction=0.5)
    assert pad_box((0, 2, 10, 6), (8, 12), config) == (0, 0, 12, 8)


def test_shape_mismatch_is_rejected() -> None:
    with pytest.raises(ValueError, match="same"):
        prompts_from_map(np.zeros((4, 4), np.float32), np.zeros((4, 5), bool), PromptConfig())


def test_repo_config_loads() -> None:
    config = load_refine_config(Path(__file__).parents[2] / "configs" / "refine.yaml")
    assert isinstance(config, RefineConfig)
    assert config.method == "auto" and config.sam.backend == "vit_t"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("refine:\n  methd: grabcut\n", "unknown key(s) 'methd'"),
        (
            "refine:\n  prompts:\n    num_postive: 3\n",
            "refine.prompts: unknown key(s) 'num_postive'",
        ),
        ("refine:\n  method: magic\n", "refine.method: must be one of"),
        ("refine:\n  guards:\n    max_area_ratio: big\n", "expected a number"),
        ("refine:\n  sam:\n    backend: vit_h\n", "refine.sam.backend: must be one of"),
        ("refin:\n  method: none\n", "unknown top-level key(s) ['refin']"),
    ],
)
def test_bad_config_is_rejected_by_name(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "refine.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_refine_config(path)
    assert message in str(info.value)


def test_a_saturated_map_gives_spaced_points_without_searching_every_maximum() -> None:
    """A black frame judged NG over the whole image: the clipped map is 1.0 on most of it, so
    every such pixel is a local maximum. skimage's peak_local_max spaced all of them against
    each other (20-30 s per 512 px frame of a real bundle; docs/measurements.md) before the
    refiner even ran. The greedy pick takes the maxima in raster order and stops at three."""
    yy, xx = np.mgrid[0:640, 0:640]
    amap = np.clip(1.6 - np.hypot(yy - 320, xx - 320) / 380, 0, 1).astype(np.float32)
    config = PromptConfig(num_positive=3, peak_min_distance=3)
    (prompt,) = prompts_from_map(amap, amap > 0.5, config)
    # the plateau's first pixel, then the next ones at least 3 px (Chebyshev) from those before
    assert prompt.positive == ((320, 92), (299, 93), (302, 93))
    assert all(amap[y, x] == 1.0 for x, y in prompt.positive)
