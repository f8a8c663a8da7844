"""The weight-free refiners and the ``build_refiner`` registry."""

from __future__ import annotations

import numpy as np
import pytest

from inspection.core.errors import ConfigError
from inspection.refine.base import MaskRefiner
from inspection.refine.classical import ClassicalRefiner, seed_labels
from inspection.refine.config import ClassicalConfig, RefineConfig, SamConfig
from inspection.refine.factory import RawRefiner, build_refiner

from .refine_cases import blurred_blob_case, iou, make_result


@pytest.mark.parametrize("method", ["grabcut", "random_walker"])
@pytest.mark.parametrize(
    ("threshold", "sure_bg_fraction"),
    [(0.2, 0.9), (0.8, 0.5)],  # raw mask too large (defaults) / too small (room to grow)
)
def test_classical_refiner_improves_iou_on_a_blurred_blob(
    method: str, threshold: float, sure_bg_fraction: float
) -> None:
    image, gt, result = blurred_blob_case(threshold)
    raw_iou = iou(result.mask, gt)
    config = RefineConfig(classical=ClassicalConfig(sure_bg_fraction=sure_bg_fraction))
    refined = build_refiner(config, method).refine_result(image, result)
    assert raw_iou < 0.6
    assert iou(refined.mask, gt) > 0.9
    assert refined.mask_source == method
    assert refined.score == result.score and refined.verdict == "NG"
    assert len(refined.regions) == 1 and refined.regions[0].area == int(refined.mask.sum())
    assert refined.timings_ms["refine_ms"] > 0


def test_ok_results_are_returned_unchanged() -> None:
    image, _, result = blurred_blob_case(0.5)
    ok = make_result(result.anomaly_map, 0.5, verdict="OK")
    assert build_refiner(RefineConfig(), "grabcut").refine_result(image, ok) is ok


def test_seed_labels_follow_the_map() -> None:
    amap = np.array([[0.1, 0.3, 0.6, 1.0]], np.float32)
    region = amap > 0.5
    labels = seed_labels(
        amap, region, 0.5, ClassicalConfig(sure_fg_level=0.5, sure_bg_fraction=0.5)
    )
    # sure bg < 0.25 <= probable bg < region; region: probable fg, >= 0.75 sure fg
    assert labels.tolist() == [[0, 2, 3, 1]]


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((128, 128), np.uint8), "(128, 128, 3) uint8 RGB"),
        (np.zeros((64, 64, 3), np.uint8), "got (64, 64, 3)"),
        (np.zeros((128, 128, 3), np.float32), "float32"),
    ],
)
def test_bad_images_are_rejected(image: np.ndarray, message: str) -> None:
    _, _, result = blurred_blob_case(0.5)
    with pytest.raises(ValueError) as info:
        ClassicalRefiner("grabcut", RefineConfig()).refine_result(image, result)
    assert message in str(info.value)


def test_registry_builds_each_weight_free_refiner() -> None:
    for method, kind in [("none", RawRefiner), ("grabcut", ClassicalRefiner)]:
        refiner = build_refiner(RefineConfig(method=method))
        assert isinstance(refiner, kind) and isinstance(refiner, MaskRefiner)
    assert build_refiner(RefineConfig()).name == "grabcut"  # auto without a SAM bundle


def test_unknown_refiner_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError) as info:
        build_refiner(RefineConfig(), "watershed")
    assert str(info.value) == (
        "unknown refiner 'watershed'; valid: auto, grabcut, none, random_walker, sam"
    )
    with pytest.raises(ValueError, match="unknown classical method 'x'; valid: grabcut"):
        ClassicalRefiner("x", RefineConfig())


def test_sam_without_a_bundle_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"refine\.sam\.bundle is not set"):
        build_refiner(RefineConfig(method="sam", sam=SamConfig(bundle=None)))


@pytest.mark.parametrize("method", ["grabcut", "random_walker"])
def test_faint_regions_below_the_image_threshold_are_refined(method: str) -> None:
    """An adaptive segmentation's region (map peak 0.45 < threshold 0.5) still gets seeds."""
    from inspection.core.types import InspectionResult
    from inspection.core.verdict import Segmentation, judge

    image, gt, strong = blurred_blob_case(0.5)
    amap = (strong.anomaly_map * 0.45).astype(np.float32)
    seg = Segmentation(kind="adaptive", seed_level=0.3, floor=0.05, relative_level=0.0)
    judged = judge(0.9, 0.5, amap, seg)
    result = InspectionResult(
        score=0.9, threshold=0.5, verdict=judged.verdict, anomaly_map=amap, mask=judged.mask,
        regions=judged.regions, latency_ms=1.0, model_version="test/v0001-fp32",
    )  # fmt: skip
    assert iou(result.mask, gt) < 0.6
    refined = build_refiner(RefineConfig(), method).refine_result(image, result)
    assert refined.mask_source == method
    assert iou(refined.mask, gt) > 0.9
