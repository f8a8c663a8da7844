"""The export gate's record: one typed read/write path for what an export adds to metrics."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest

from inspection.core.config import to_mapping
from inspection.core.errors import ConfigError
from inspection.core.export_gate import (
    BundleFigures,
    ExportRecord,
    GateRecord,
    GateTolerances,
    check_gate,
)
from inspection.core.metrics import EvaluationMetrics, SubsetMetrics

FP32 = BundleFigures(
    false_reject_rate=0.0, miss_rate=0.0, image_auroc=0.95, pixel_auroc=0.9, aupro=0.6,
    region_recall=0.7, ng_without_region=0, pixel_f1=0.3, n_good=4, n_defective=8,
)  # fmt: skip
INT8 = replace(FP32, miss_rate=0.125, image_auroc=0.9)


def test_a_gate_decision_is_recorded_and_read_back_unchanged() -> None:
    tolerances = GateTolerances()
    decision = check_gate(INT8, FP32, tolerances)
    gate = GateRecord.decided(decision, INT8, FP32, tolerances, force=True)
    assert (gate.passed, gate.forced) == (False, True)
    assert gate.refusal().startswith("miss_rate 0.125 vs FP32 0.000")
    reference = EvaluationMetrics(SubsetMetrics(image_auroc=0.95))
    record = ExportRecord(gate=gate, reference_fp32=reference, image_auroc_drop=0.05)
    own = EvaluationMetrics(SubsetMetrics(image_auroc=0.9)).to_mapping()
    stored = {**own, **record.to_mapping()}
    assert ExportRecord.from_metrics(stored) == record
    assert EvaluationMetrics.from_mapping(stored).image_auroc == 0.9  # the bundle's own
    passed = GateRecord.decided(check_gate(FP32, FP32, tolerances), FP32, FP32, tolerances)
    assert (passed.passed, passed.forced, passed.refusal()) == (True, False, "")


def test_metrics_of_a_bundle_exported_before_the_gate_read() -> None:
    """Releases before the gate stored a flat FP32 reference and the image-AUROC drop."""
    stored = {"image_auroc": 0.9, "reference_fp32": {"image_auroc": 0.93}, "image_auroc_drop": 0.03}
    record = ExportRecord.from_metrics(stored)
    assert record.gate is None and record.image_auroc_drop == 0.03
    assert record.reference_fp32 is not None and record.reference_fp32.image_auroc == 0.93
    assert ExportRecord.from_metrics({}) == ExportRecord()


def _gate(**changes: Any) -> dict[str, Any]:
    data = to_mapping(GateRecord(True, INT8, FP32))
    return {**data, **changes}


@pytest.mark.parametrize(
    ("metrics", "error"),
    [
        ({"gate": _gate(passed=False)}, "a passed gate names no failures and a refused one"),
        ({"gate": _gate(failures=["miss_rate"])}, "passed=True with 1 failure(s)"),
        ({"gate": _gate(forced=True)}, "only a refused bundle can be forced"),
        ({"gate": {"passed": False, "failures": ["x"]}}, "metrics.gate: missing required key"),
        ({"gate": _gate(verdict="OK")}, "metrics.gate: unknown key(s) 'verdict'"),
        ({"gate": _gate(figures={**to_mapping(FP32), "n_good": "4"})}, "figures.n_good"),
        ({"gate": _gate(tolerances={"aupro": 2.0})}, "tolerance aupro must be in [0, 1]"),
        ({"gate": "passed"}, "metrics.gate: expected a mapping"),
        ({"image_auroc_drop": "0.01"}, "image_auroc_drop: expected a number"),
        ({"reference_fp32": [0.9]}, "reference_fp32: expected a mapping"),
    ],
)
def test_a_malformed_export_record_is_refused_by_name(metrics: dict, error: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(error)):
        ExportRecord.from_metrics(metrics)


@pytest.mark.parametrize(("rejected", "passed"), [(0, True), (17, True), (40, False)])
def test_the_budget_check_of_the_gate_holds_past_a_thousand_good_parts(
    rejected: int, passed: bool
) -> None:
    """1,100 held-out good parts at a 1 % budget (the float binomial sum overflowed from 1030)."""
    import numpy as np

    from inspection.core.calibration import Calibration, Normalization
    from inspection.core.export_gate import with_budget
    from inspection.core.operating_point import OperatingPoint, choose_threshold
    from inspection.core.verdict import Segmentation

    choice = choose_threshold(np.arange(1100.0), OperatingPoint(budget=0.01))
    calibration = Calibration(
        Normalization(0.3, 0.5, 0.0, 1.0, 0.0, 1.0), Segmentation.global_threshold(0.5),
        operating=choice,
    )  # fmt: skip
    figures = replace(FP32, false_reject_rate=rejected / 1100, n_good=1100)
    decision = with_budget(check_gate(figures, FP32, GateTolerances()), figures, calibration)
    assert decision.passed == passed
    text = f"false reject {rejected}/1100 good at budget 1.0% (allowed 17)"
    assert text in (decision.checks if passed else decision.failures)
