"""The export gate: does a bundle, at ITS OWN thresholds, judge parts as well as FP32 does?

Figures (``BundleFigures``) are measured per bundle on the labelled held-out split at the
bundle's own calibration, through the one verdict rule (``inspection.core.verdict.judge``):
false-reject and miss rates, image/pixel AUROC, AUPRO, region recall and the count of NG
verdicts without a region. ``check_gate`` compares a candidate with the FP32 reference within
``GateTolerances`` and names every failed figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import cv2
import numpy as np

from inspection.core.calibration import Calibration, normalize_maps, normalize_scores
from inspection.core.errors import InspectionError
from inspection.core.verdict import judge

REGION_OVERLAP = 0.3
"""A ground-truth defect counts as found when predicted regions cover >= 30 % of it."""


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


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    failures: tuple[str, ...]
    checks: tuple[str, ...]

    def message(self, what: str) -> str:
        if self.passed:
            return f"{what} holds the gate: " + "; ".join(self.checks)
        return f"{what} refused: " + "; ".join(self.failures)


def check_gate(
    candidate: BundleFigures, reference: BundleFigures, tolerances: GateTolerances
) -> GateDecision:
    """Compare ``candidate`` with the FP32 ``reference``; every figure beyond tolerance fails.

    A figure undefined on the split (None) for either bundle is not compared. NG verdicts
    without a region fail whatever the reference does.
    """
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


def verdict_figures(
    scores: np.ndarray,
    maps: np.ndarray,
    labels: np.ndarray,
    masks: np.ndarray,
    calibration: Calibration,
    *,
    mask_known: np.ndarray | None = None,
) -> tuple[float, float, float | None, int, np.ndarray]:
    """Judge every image at the calibration's thresholds with the one verdict rule.

    scores (N,) and maps (N, h, w) raw; masks (N, h, w) bool ground truth. Returns
    (false-reject rate, miss rate, region recall, NG-without-region count, predicted
    masks (N, h, w) bool).
    """
    normalised = normalize_maps(maps, calibration.normalization)
    normalised_scores = normalize_scores(scores, calibration.normalization)
    predicted = np.zeros(normalised.shape, dtype=bool)
    verdicts = np.zeros(len(scores), dtype=bool)
    without_region = 0
    for i, score in enumerate(normalised_scores):
        judgement = judge(float(score), 0.5, normalised[i], calibration.segmentation)
        verdicts[i] = judgement.verdict == "NG"
        predicted[i] = judgement.mask
        without_region += int(verdicts[i] and not judgement.regions)
    labels = np.asarray(labels).astype(bool)
    good, bad = ~labels, labels
    frr = float(verdicts[good].mean()) if good.any() else 0.0
    miss = float((~verdicts[bad]).mean()) if bad.any() else 0.0
    known = np.ones(len(labels), bool) if mask_known is None else np.asarray(mask_known, bool)
    recall = region_recall(predicted[bad & known], np.asarray(masks, bool)[bad & known])
    return frr, miss, recall, without_region, predicted


def region_recall(predicted: Sequence[np.ndarray], truth: Sequence[np.ndarray]) -> float | None:
    """Share of ground-truth connected defects covered >= ``REGION_OVERLAP`` by ``predicted``.

    Both are sequences of (h, w) bool masks; None when the truth has no defect at all.
    """
    found = total = 0
    for pred, gt in zip(predicted, truth, strict=True):
        count, labels = cv2.connectedComponents(gt.astype(np.uint8), connectivity=8)
        for label in range(1, count):
            region = labels == label
            total += 1
            found += int(pred[region].mean() >= REGION_OVERLAP)
    return found / total if total else None
