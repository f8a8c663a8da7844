"""The gate's shortfall that INT8 accuracy control bounds on the validation split."""

from __future__ import annotations

from dataclasses import replace

import pytest

from inspection.core.export_gate import BundleFigures, GateTolerances
from inspection.training.int8_control import NO_REGION_SHARE, shortfall

FP32 = BundleFigures(
    false_reject_rate=0.0, miss_rate=0.10, image_auroc=0.95, pixel_auroc=0.90, aupro=0.80,
    region_recall=0.70, ng_without_region=0, n_good=18, n_defective=64,
)  # fmt: skip


def test_no_figure_worse_is_no_shortfall() -> None:
    better = replace(FP32, miss_rate=0.05, image_auroc=0.97)
    assert shortfall(better, FP32, GateTolerances()) == 0.0
    assert shortfall(FP32, FP32, GateTolerances()) == 0.0


def test_the_worst_figure_as_a_share_of_its_tolerance() -> None:
    # misses 0.025 worse (half of 0.05), region recall 0.08 worse (0.8 of 0.10)
    worse = replace(FP32, miss_rate=0.125, region_recall=0.62)
    assert shortfall(worse, FP32, GateTolerances()) == pytest.approx(0.8)
    # an improvement elsewhere does not offset it
    assert shortfall(replace(worse, image_auroc=1.0), FP32, GateTolerances()) == pytest.approx(0.8)


def test_zero_tolerance_and_a_verdict_without_region_count_in_full() -> None:
    strict = GateTolerances(miss_rate=0.0)
    assert shortfall(replace(FP32, miss_rate=0.11), FP32, strict) == NO_REGION_SHARE
    assert shortfall(replace(FP32, ng_without_region=1), FP32, GateTolerances()) == NO_REGION_SHARE
    undefined = replace(FP32, aupro=None, pixel_auroc=0.5)  # None: not compared
    assert shortfall(undefined, FP32, GateTolerances(pixel_auroc=0.1)) == pytest.approx(4.0)
