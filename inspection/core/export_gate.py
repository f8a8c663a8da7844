"""The export gate: does a bundle, at ITS OWN thresholds, judge parts as well as FP32 does?
``measure`` judges the held-out split, ``check_gate`` compares with FP32 within
``GateTolerances``; the export records both as one ``ExportRecord``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from inspection.core.calibration import Calibration, normalize_maps, normalize_scores
from inspection.core.config import from_mapping, to_mapping
from inspection.core.errors import ConfigError, InspectionError
from inspection.core.metrics import EvaluationMetrics, SubsetMetrics, compute_metrics, judge_all
from inspection.core.operating_point import BUDGET_TEST_LEVEL, allowed_rejects, within_budget


class GateRefusal(InspectionError):
    """A bundle judged worse than FP32 beyond the tolerances; the message names each figure."""


@dataclass(frozen=True)
class GateTolerances:
    """How far a bundle may fall behind FP32 (absolute; rates may rise, the rest may drop)."""

    false_reject_rate: float = 0.05
    miss_rate: float = 0.05
    image_auroc: float = 0.01
    pixel_auroc: float = 0.02
    aupro: float = 0.05
    region_recall: float = 0.10

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"tolerance {item.name} must be in [0, 1], got {value}")


RISING = ("false_reject_rate", "miss_rate")
"""Figures where higher is worse; every other gated figure is higher-is-better."""


@dataclass(frozen=True)
class BundleFigures:
    """What a bundle does on a labelled split at its own thresholds (None: undefined there)."""

    false_reject_rate: float
    miss_rate: float
    image_auroc: float | None
    pixel_auroc: float | None
    aupro: float | None
    region_recall: float | None
    ng_without_region: int
    pixel_f1: float | None = None
    n_good: int = 0
    n_defective: int = 0

    def rejected_good(self) -> int:
        return round(self.false_reject_rate * self.n_good)

    def missed(self) -> int:
        return round(self.miss_rate * self.n_defective)


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    failures: tuple[str, ...]
    checks: tuple[str, ...]

    def message(self, what: str) -> str:
        if self.passed:
            return f"{what} holds the gate: " + "; ".join(self.checks)
        return f"{what} refused: " + "; ".join(self.failures)


@dataclass(frozen=True)
class GateRecord:
    """The export gate's outcome as a bundle records it (``metrics["gate"]``): its own
    ``figures`` vs ``reference_fp32`` (the FP32 bundle's, calibrated alike); ``forced``:
    registered although refused (``--force``)."""

    passed: bool
    figures: BundleFigures
    reference_fp32: BundleFigures
    tolerances: GateTolerances = field(default_factory=GateTolerances)
    failures: tuple[str, ...] = ()
    forced: bool = False

    def __post_init__(self) -> None:
        if self.passed == bool(self.failures):
            raise ValueError(
                f"a passed gate names no failures and a refused one at least one; got "
                f"passed={self.passed} with {len(self.failures)} failure(s)"
            )
        if self.forced and self.passed:
            raise ValueError("only a refused bundle can be forced")

    @classmethod
    def decided(
        cls,
        decision: GateDecision,
        figures: BundleFigures,
        reference: BundleFigures,
        tolerances: GateTolerances,
        *,
        force: bool = False,
    ) -> GateRecord:
        """The record of ``check_gate(figures, reference, tolerances)`` = ``decision``."""
        return cls(
            passed=decision.passed,
            figures=figures,
            reference_fp32=reference,
            tolerances=tolerances,
            failures=decision.failures,
            forced=force and not decision.passed,
        )

    def refusal(self) -> str:
        """Why the gate refused the bundle ('' when it passed)."""
        return "; ".join(self.failures)


@dataclass(frozen=True)
class ExportRecord:
    """What an export adds to a bundle's metrics beside its own ``EvaluationMetrics``
    (``gate`` None: exported before the gate; the FP32 fields None for an FP32 bundle)."""

    gate: GateRecord | None = None
    reference_fp32: EvaluationMetrics | None = None
    image_auroc_drop: float | None = None

    def to_mapping(self) -> dict[str, Any]:
        """The keys to merge into a bundle's metrics mapping (None fields left out)."""
        reference = None if self.reference_fp32 is None else self.reference_fp32.to_mapping()
        data = {"gate": to_mapping(self.gate), "reference_fp32": reference,
                "image_auroc_drop": self.image_auroc_drop}  # fmt: skip
        return {k: v for k, v in data.items() if v is not None}

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, Any], where: str = "metrics") -> ExportRecord:
        """The export's keys of a bundle's ``metrics`` (any release; malformed: ``ConfigError``)."""
        gate, reference = metrics.get("gate"), metrics.get("reference_fp32")
        drop = metrics.get("image_auroc_drop")
        if drop is not None and (isinstance(drop, bool) or not isinstance(drop, (int, float))):
            raise ConfigError(f"{where}.image_auroc_drop: expected a number, got {drop!r}")
        for key, value in (("reference_fp32", reference), ("gate", gate)):
            if value is not None and not isinstance(value, Mapping):
                raise ConfigError(f"{where}.{key}: expected a mapping, got {value!r}")
        return cls(
            gate=None if gate is None else from_mapping(GateRecord, gate, f"{where}.gate"),
            reference_fp32=None if reference is None else EvaluationMetrics.from_mapping(reference),
            image_auroc_drop=None if drop is None else float(drop),
        )


def check_gate(
    candidate: BundleFigures, reference: BundleFigures, tolerances: GateTolerances
) -> GateDecision:
    """Compare ``candidate`` with the FP32 ``reference``; every figure beyond tolerance fails
    (undefined ones are not compared); an NG verdict without a region always fails."""
    failures, checks = [], []
    for item in fields(tolerances):
        name, tolerance = item.name, getattr(tolerances, item.name)
        ours, theirs = getattr(candidate, name), getattr(reference, name)
        if ours is None or theirs is None:
            continue
        worse = (ours - theirs) if name in RISING else (theirs - ours)
        text = f"{name} {ours:.3f} vs FP32 {theirs:.3f}"
        if worse > tolerance + 1e-9:
            failures.append(f"{text} (worse by {worse:.3f} > tolerance {tolerance})")
        else:
            checks.append(text)
    if candidate.ng_without_region:
        failures.append(f"ng_without_region {candidate.ng_without_region} (must be 0)")
    return GateDecision(not failures, tuple(failures), tuple(checks))


def measure(
    scores: np.ndarray,
    maps: np.ndarray,
    labels: np.ndarray,
    masks: np.ndarray,
    defect_types: Sequence[str],
    calibration: Calibration,
    *,
    mask_known: np.ndarray | None = None,
) -> tuple[EvaluationMetrics, BundleFigures]:
    """Judge every image at the calibration with the one verdict rule (normalised outputs, as
    the station) and measure (AUROC/AUPRO on the raw ones: normalisation clips into ties)."""
    norm = calibration.normalization
    judged = judge_all(
        normalize_scores(scores, norm), normalize_maps(maps, norm), 0.5, calibration.segmentation
    )
    metrics = compute_metrics(
        scores,
        labels,
        maps,
        masks,
        defect_types,
        judged,
        image_threshold=norm.image_threshold_raw,
        segmentation=calibration.segmentation.describe(),
        mask_known=mask_known,
    )
    return metrics, figures_of(metrics.overall)


def figures_of(overall: SubsetMetrics) -> BundleFigures:
    """The gated figures of a metrics subset (rates of an empty class count as 0)."""
    counts = (overall.n_good, overall.n_defective, overall.ng_without_region)
    if None in counts:
        raise ValueError("metrics recorded before metrics schema 1 carry no counts to gate on")
    return BundleFigures(
        false_reject_rate=overall.false_reject_rate or 0.0,
        miss_rate=overall.miss_rate or 0.0,
        image_auroc=overall.image_auroc,
        pixel_auroc=overall.pixel_auroc,
        aupro=overall.aupro,
        region_recall=overall.region_recall,
        ng_without_region=int(overall.ng_without_region or 0),
        pixel_f1=overall.pixel_f1,
        n_good=int(overall.n_good or 0),
        n_defective=int(overall.n_defective or 0),
    )


def with_budget(
    decision: GateDecision,
    figures: BundleFigures,
    calibration: Calibration,
    level: float = BUDGET_TEST_LEVEL,
) -> GateDecision:
    """``decision`` plus a budget operating point's own check: the rejects among held-out good
    parts plausible at the budget (``within_budget`` at ``level``)."""
    choice = calibration.operating
    if choice is None or choice.policy != "false_reject_budget" or not figures.n_good:
        return decision
    rejected, n = figures.rejected_good(), figures.n_good
    allowed = allowed_rejects(n, choice.budget, level)
    text = f"false reject {rejected}/{n} good at budget {choice.budget:.1%} (allowed {allowed})"
    if not within_budget(rejected, n, choice.budget, level):
        return GateDecision(False, (*decision.failures, text), decision.checks)
    return GateDecision(decision.passed, decision.failures, (*decision.checks, text))
