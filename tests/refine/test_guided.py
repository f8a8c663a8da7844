"""The guided refiner: NG regions cut again on the map sharpened by the image."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspection.refine.config import GuidedConfig, RefineConfig
from inspection.refine.factory import build_refiner
from inspection.refine.guided import GuidedRefiner, grey_guide, guided_map

from .refine_cases import blurred_blob_case, iou, make_result


def thin_crack_case(size: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, ground truth, map): a dark 2 px diagonal crack on noisy texture; the map is
    the crack blurred like a patch map (sigma 4 px), so its thresholded blob is far wider."""
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(160, 8, (size, size, 3)), 0, 255).astype(np.uint8)
    gt = np.zeros((size, size), np.uint8)
    cv2.line(gt, (30, 40), (100, 90), 1, 2)
    gt = gt.astype(bool)
    image[gt] = 60
    amap = cv2.GaussianBlur(gt.astype(np.float32), (0, 0), 4.0)
    return image, gt, (amap / amap.max()).astype(np.float32)


def test_a_thin_crack_comes_out_thin() -> None:
    image, gt, amap = thin_crack_case()
    result = make_result(amap, 0.5)
    config = RefineConfig(guided=GuidedConfig(radius_fraction=1 / 16))  # 8 px at 128 px
    refined = GuidedRefiner(config).refine_result(image, result)
    assert iou(result.mask, gt) < 0.4
    assert iou(refined.mask, gt) > 0.8
    assert refined.mask_source == "guided"
    assert refined.score == result.score and refined.verdict == "NG"
    assert sum(r.area for r in refined.regions) == int(refined.mask.sum())


def test_a_flat_image_leaves_the_map_as_it_was_smoothed() -> None:
    _, _, amap = thin_crack_case()
    flat = np.full(amap.shape, 0.5, np.float32)
    box = cv2.boxFilter(cv2.boxFilter(amap, -1, (9, 9), borderType=cv2.BORDER_REFLECT), -1,
                        (9, 9), borderType=cv2.BORDER_REFLECT)  # fmt: skip
    np.testing.assert_allclose(guided_map(amap, flat, 4, 1e-3), box, atol=1e-5)


def test_ok_results_are_returned_unchanged() -> None:
    image, _, result = blurred_blob_case(0.5)
    ok = make_result(result.anomaly_map, 0.5, verdict="OK")
    assert build_refiner(RefineConfig(), "guided").refine_result(image, ok) is ok


def test_the_guide_is_grey_in_unit_range_at_the_map_size() -> None:
    image = np.zeros((64, 32, 3), np.uint8)
    image[:, 16:] = 255
    guide = grey_guide(image, (32, 16))
    assert guide.shape == (32, 16) and guide.dtype == np.float32
    assert guide[:, :7].max() == 0.0 and guide[:, 9:].min() == 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"radius_fraction": 0.0}, "radius_fraction must be in"), ({"eps": 0.0}, "eps must be > 0")],
)
def test_bad_settings_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GuidedConfig(**kwargs)


def test_an_image_not_matching_the_map_is_rejected() -> None:
    _, _, result = blurred_blob_case(0.5)
    with pytest.raises(ValueError, match="matching the anomaly map"):
        GuidedRefiner(RefineConfig()).refine_result(np.zeros((64, 64, 3), np.uint8), result)
