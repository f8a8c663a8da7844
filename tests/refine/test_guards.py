"""Guard rails: which refined region masks are trusted, and how results are merged."""

from __future__ import annotations

import numpy as np
import pytest

from inspection.refine.config import GuardConfig, PromptConfig
from inspection.refine.guards import Candidate, judge, merge, neighbourhood
from inspection.refine.prompts import prompts_from_map

from .refine_cases import make_result

SHAPE = (100, 100)
CONFIG = GuardConfig(
    neighbourhood_px=5,
    neighbourhood_fraction=0.0,
    max_outside_fraction=0.2,
    min_area_ratio=0.25,
    max_area_ratio=3.0,
    max_image_fraction=0.1,
    min_predicted_iou=0.7,
)


def _rect(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros(SHAPE, bool)
    mask[y0:y1, x0:x1] = True
    return mask


REGION = _rect(40, 40, 60, 60)  # 400 px


@pytest.mark.parametrize(
    ("candidate", "iou", "accepted", "reason"),
    [
        (_rect(42, 42, 58, 58), None, True, "ok"),  # tighter: 256 px
        (_rect(38, 38, 62, 62), 0.9, True, "ok"),  # slightly larger, good IoU
        (_rect(42, 42, 58, 58), 0.5, False, "predicted IoU 0.50 < 0.7"),
        (np.zeros(SHAPE, bool), None, False, "empty mask"),
        (_rect(40, 40, 60, 60) | _rect(0, 0, 12, 12), None, False, "26% of the mask leaves"),
        (_rect(48, 48, 56, 56), None, False, "area ratio 0.16 vs raw < 0.25"),
        (_rect(36, 36, 64, 64), None, True, "ok"),  # 784 px: 1.96x, inside the 5 px ring
        (_rect(0, 0, 100, 100), None, False, "leaves the region's neighbourhood"),
    ],
)
def test_guard_table(candidate: np.ndarray, iou: float | None, accepted: bool, reason: str) -> None:
    decision = judge(REGION, candidate, CONFIG, iou)
    assert decision.accepted is accepted
    assert reason in decision.reason
    if accepted:
        assert (
            decision.mask is not None and not (decision.mask & ~neighbourhood(REGION, CONFIG)).any()
        )


def test_area_ratio_and_image_fraction_limits() -> None:
    loose = GuardConfig(neighbourhood_px=30, neighbourhood_fraction=0.0, max_outside_fraction=0.0)
    big = _rect(25, 25, 75, 75)  # 2500 px = 6.25x the region, 25 % of the image
    too_large = judge(REGION, big, GuardConfig(**{**loose.__dict__, "max_area_ratio": 4.0}))
    assert not too_large.accepted and "area ratio 6.25 vs raw > 4.0" in too_large.reason
    too_much = judge(
        REGION,
        big,
        GuardConfig(**{**loose.__dict__, "max_area_ratio": 10.0, "max_image_fraction": 0.2}),
    )
    assert not too_much.accepted and "covers 25% of the image > 20%" in too_much.reason


def test_small_leaks_are_clipped_to_the_neighbourhood() -> None:
    candidate = _rect(42, 42, 58, 58) | _rect(90, 90, 92, 92)  # 4 px far away: 1.5 %
    decision = judge(REGION, candidate, CONFIG)
    assert decision.accepted
    assert decision.mask.sum() == 256 and not decision.mask[90:92, 90:92].any()


def _two_region_result():
    amap = np.zeros(SHAPE, np.float32)
    amap[10:30, 10:30] = 0.8
    amap[60:80, 60:80] = 0.8
    return make_result(amap, 0.5)


def test_merge_records_mask_source_per_outcome() -> None:
    result = _two_region_result()
    prompts = prompts_from_map(result.anomaly_map, result.mask, PromptConfig())
    a, b = (Candidate(_shrink(p.region)) for p in prompts)
    both, decisions = merge(result, prompts, [a, b], GuardConfig(), "grabcut")
    assert both.mask_source == "grabcut" and all(d.accepted for d in decisions)
    assert both.mask.sum() == 2 * 16 * 16 and len(both.regions) == 2
    one, decisions = merge(result, prompts, [a, None], GuardConfig(), "sam", {"refine_ms": 3.0})
    assert one.mask_source == "sam+raw" and decisions[1] is None
    assert one.mask.sum() == 16 * 16 + 20 * 20
    assert one.timings_ms["refine_ms"] == 3.0 and one.timings_ms["refine_accepted"] == 1.0
    none, _ = merge(result, prompts, [None, Candidate(np.zeros(SHAPE, bool))], GuardConfig(), "sam")
    assert none.mask_source == "raw" and np.array_equal(none.mask, result.mask)
    assert none.score == result.score and none.verdict == "NG"


def _shrink(region: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(region)
    out = np.zeros_like(region)
    out[ys.min() + 2 : ys.max() - 1, xs.min() + 2 : xs.max() - 1] = True
    return out
