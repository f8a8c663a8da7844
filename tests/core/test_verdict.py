"""The one verdict rule: NG exactly when score >= threshold; NG has regions, OK has none."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspection.core.bundle import BundleMetadata
from inspection.core.config import from_mapping, to_mapping
from inspection.core.errors import ConfigError
from inspection.core.threshold import is_ng
from inspection.core.types import InspectionResult
from inspection.core.verdict import Segmentation, judge, segment


def random_map(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Smooth noise with 0-3 blobs, sometimes flat, sometimes all zeros: (H, W) float32 [0, 1]."""
    kind = rng.integers(0, 5)
    if kind == 0:
        return np.full(shape, rng.uniform(0, 1), dtype=np.float32)
    amap = cv2.GaussianBlur(rng.random(shape, dtype=np.float32), (0, 0), rng.uniform(0.5, 4))
    amap = amap * rng.uniform(0.1, 0.6)
    for _ in range(rng.integers(0, 4)):
        blob = np.zeros(shape, np.float32)
        center = (int(rng.integers(0, shape[1])), int(rng.integers(0, shape[0])))
        cv2.circle(blob, center, int(rng.integers(1, 12)), 1.0, -1)
        amap += cv2.GaussianBlur(blob, (0, 0), rng.uniform(1, 5)) * rng.uniform(0.1, 1.0)
    return np.clip(amap, 0, 1).astype(np.float32)


def random_segmentation(rng: np.random.Generator) -> Segmentation:
    peak_level = rng.uniform(0.05, 0.95)
    if rng.random() < 0.4:
        level = rng.uniform(0, 1)
        return Segmentation(seed_level=level, floor=level, peak_level=peak_level)
    seed = rng.uniform(0, 1)
    return Segmentation(
        kind="adaptive",
        seed_level=seed,
        floor=rng.uniform(0, seed),
        relative_level=rng.uniform(0, 0.9),
        min_area_fraction=rng.choice([0.0, 0.001, 0.01]),
        peak_level=peak_level,
    )


def test_invariant_over_random_maps_and_thresholds() -> None:
    rng = np.random.default_rng(0)
    counts = {"OK": 0, "NG": 0}
    for _ in range(600):
        shape = (int(rng.integers(8, 70)), int(rng.integers(8, 70)))
        amap = random_map(rng, shape)
        score = float(rng.uniform(0, 1))
        threshold = float(rng.choice([score, rng.uniform(0, 1)]))
        seg = random_segmentation(rng)
        judged = judge(score, threshold, amap, seg)
        counts[judged.verdict] += 1
        assert judged.verdict == ("NG" if score >= threshold else "OK")
        assert judged.mask.shape == amap.shape and judged.mask.dtype == bool
        if judged.verdict == "NG":
            peak = np.unravel_index(int(np.argmax(amap)), amap.shape)
            assert judged.regions and judged.mask[peak]
            assert sum(r.area for r in judged.regions) == int(judged.mask.sum())
        else:
            assert not judged.mask.any() and not judged.regions
            assert all(c.area > 0 for c in judged.candidates)
        # the result type enforces the same invariant
        InspectionResult(
            score=score,
            threshold=threshold,
            verdict=judged.verdict,
            anomaly_map=amap,
            mask=judged.mask,
            regions=judged.regions,
            candidates=judged.candidates,
            latency_ms=0.0,
            model_version="p/v0001-fp32",
        )
    assert counts["OK"] > 100 and counts["NG"] > 100


def test_score_equal_to_threshold_is_ng() -> None:
    assert is_ng(0.5, 0.5) and not is_ng(0.4999, 0.5)
    np.testing.assert_array_equal(is_ng(np.array([0.4, 0.5, 0.6]), 0.5), [False, True, True])


def test_weak_map_still_gives_the_ng_a_region_at_its_peak() -> None:
    amap = np.full((32, 32), 0.1, np.float32)
    amap[10:13, 20:23] = 0.3  # far below the pixel threshold
    judged = judge(0.9, 0.5, amap, Segmentation.global_threshold(0.5))
    assert len(judged.regions) == 1
    assert judged.regions[0].box == (20, 10, 23, 13) and judged.regions[0].peak == (20, 10)


def test_a_faint_ng_region_is_cut_at_peak_level_between_median_and_peak() -> None:
    """Below the floor, the peak's region keeps the pixels at or above median + peak_level x
    (peak - median): 0.5 is the half-maximum, higher levels draw it tighter round the peak."""
    amap = np.zeros((64, 64), np.float32)
    amap[32, 32] = 1.0
    amap = cv2.GaussianBlur(amap, (0, 0), 4)
    amap *= 0.3 / amap.max()  # a faint defect: its peak stays below the threshold
    median, top = float(np.median(amap)), float(amap.max())
    areas = {}
    for level in (0.5, 0.9):
        judged = judge(0.9, 0.5, amap, Segmentation(peak_level=level))
        assert judged.verdict == "NG" and judged.regions[0].peak == (32, 32)
        np.testing.assert_array_equal(judged.mask, amap >= median + level * (top - median))
        areas[level] = judged.regions[0].area
    assert areas[0.9] < areas[0.5] / 3


def test_adaptive_grows_from_seed_relative_to_region_peak() -> None:
    amap = np.zeros((40, 40), np.float32)
    amap[5:15, 5:15] = 0.4  # shoulder of the strong defect
    amap[8:12, 8:12] = 0.9  # strong peak
    amap[25:35, 25:35] = 0.35  # weak blob: above floor but never reaches the seed level
    seg = Segmentation(kind="adaptive", seed_level=0.6, floor=0.3, relative_level=0.0)
    mask = segment(amap, seg)
    assert mask[5:15, 5:15].all() and not mask[25:35, 25:35].any()
    tight = segment(
        amap, Segmentation(kind="adaptive", seed_level=0.6, floor=0.3, relative_level=0.5)
    )
    assert tight.sum() == 16  # only pixels >= 0.3 + 0.5 * (0.9 - 0.3)


def test_ok_reports_candidates_not_defects() -> None:
    amap = np.zeros((20, 20), np.float32)
    amap[2:6, 2:6] = 0.8
    judged = judge(0.2, 0.5, amap, Segmentation.global_threshold(0.5))
    assert judged.verdict == "OK" and not judged.mask.any() and not judged.regions
    assert len(judged.candidates) == 1 and judged.candidates[0].area == 16


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "otsu"}, "kind must be one of"),
        ({"kind": "global", "seed_level": 0.5, "floor": 0.3}, "one pixel threshold"),
        ({"kind": "adaptive", "seed_level": 0.3, "floor": 0.5}, "must not exceed"),
        ({"kind": "adaptive", "relative_level": 1.0}, "relative_level"),
        ({"seed_level": 1.5, "floor": 0.5}, "seed_level must be in"),
        ({"peak_level": 1.0}, "peak_level"),
        ({"peak_level": 0.0}, "peak_level"),
    ],
)
def test_bad_segmentation_is_rejected(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Segmentation(**fields)


def test_result_rejects_verdicts_that_break_the_rule() -> None:
    amap = np.zeros((8, 8), np.float32)
    empty = np.zeros((8, 8), bool)
    common = {"anomaly_map": amap, "latency_ms": 0.0, "model_version": "p/v1"}
    with pytest.raises(ValueError, match="contradicts"):
        InspectionResult(score=0.5, threshold=0.5, verdict="OK", mask=empty, regions=(), **common)
    with pytest.raises(ValueError, match="at least one region"):
        InspectionResult(score=0.7, threshold=0.5, verdict="NG", mask=empty, regions=(), **common)
    judged = judge(0.7, 0.5, amap + 0.9, Segmentation())
    with pytest.raises(ValueError, match="no defect region"):
        InspectionResult(
            score=0.1,
            threshold=0.5,
            verdict="OK",
            mask=judged.mask,
            regions=judged.regions,
            **common,
        )


def test_segmentation_round_trips_through_bundle_metadata() -> None:
    seg = Segmentation(
        kind="adaptive", seed_level=0.6, floor=0.4, relative_level=0.3, peak_level=0.8
    )
    base = {
        "schema_version": 1, "bundle_id": "v0001-fp32", "product": "p", "model_kind": "patchcore",
        "model_version": "v0001", "precision": "fp32",
        "preprocessing": {"input_size": [64, 64], "mean": [0, 0, 0], "std": [1, 1, 1]},
        "normalization": {
            "image_threshold_raw": 1.0, "pixel_threshold_raw": 1.0, "image_min": 0.0,
            "image_max": 2.0, "pixel_min": 0.0, "pixel_max": 2.0,
        },
    }  # fmt: skip
    old = from_mapping(BundleMetadata, base)
    assert old.segmentation_rule == Segmentation.global_threshold(0.5)
    new = from_mapping(BundleMetadata, {**base, "segmentation": to_mapping(seg)})
    assert new.segmentation_rule == seg
    bad = {**base, "segmentation": {**to_mapping(seg), "floor": 0.9}}
    with pytest.raises(ConfigError, match="segmentation"):
        from_mapping(BundleMetadata, bad)


@pytest.mark.parametrize(
    ("seed_level", "floor", "relative_level"),
    [(0.7, 0.4, 0.5), (0.6, 0.6, 0.25), (0.9, 0.5, 0.0), (0.8, 0.3, 0.75)],
)
def test_hysteresis_matches_the_per_component_definition(seed_level, floor, relative_level):
    """Seeded components (peak >= seed_level) grown to floor + relative x (peak - floor),
    against a plain per-component loop on random smooth maps, their transposed views (not
    C-contiguous), and the maps scaled under seed_level (a good part's: no seed, so no
    region, though some pixels lie above floor)."""
    rng = np.random.default_rng(3)
    seg = Segmentation(
        kind="adaptive", seed_level=seed_level, floor=floor, relative_level=relative_level
    )
    maps = []
    for _ in range(20):
        amap = cv2.GaussianBlur(rng.random((64, 64)).astype(np.float32), (0, 0), 3.0)
        amap = (amap - amap.min()) / (amap.max() - amap.min())
        maps += [amap, amap.T, amap * np.float32(0.99 * seed_level)]
    for amap in maps:
        count, labels = cv2.connectedComponents((amap >= floor).astype(np.uint8), connectivity=8)
        expected = np.zeros(amap.shape, bool)
        for label in range(1, count):
            inside = labels == label
            peak = float(amap[inside].max())
            if peak >= seed_level:
                expected |= inside & (amap >= floor + relative_level * (peak - floor))
        np.testing.assert_array_equal(segment(amap, seg), expected)
        assert expected.any() == (amap.max() >= seed_level)
