"""A live bundle's certificate, renewed from the line's audited good parts without retraining.

Parts drawn into a station's audit sample at random, whatever their verdict, and confirmed good
are exchangeable with new good parts: their scores join the bundle's own good calibration
scores and the split-conformal threshold is set again on all of them (``certify``), if this
very bundle scored them and the new threshold passes its export gate again (docs/statistics.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from inspection.core.bundle import BundleMetadata
from inspection.core.calibration import normalize_scores
from inspection.core.errors import BundleError, InspectionError
from inspection.core.export_gate import (
    BundleFigures,
    GateDecision,
    GateTolerances,
    check_gate,
    with_budget,
)
from inspection.core.operating_point import (
    OperatingPoint,
    ThresholdChoice,
    choose_threshold,
    fewest_below_largest,
)
from inspection.core.threshold import is_ng
from inspection.core.validation_scores import ValidationScores

AUDITED = "audited_good"
"""The ``good_sources`` name of confirmed-good audit parts."""
BUNDLE_THRESHOLD = 0.5
"""A bundle's own threshold on its normalised scores (``BundleMetadata.calibrated``)."""


class CertificationError(InspectionError):
    """A threshold that cannot be derived or would not pass the gate; the message says why."""


@dataclass(frozen=True)
class AuditedPart:
    """A confirmed-good part of the random audit sample: its normalised score, its bundle."""

    inspection_id: str
    bundle_id: str
    score: float


@dataclass(frozen=True)
class Certificate:
    """What a bundle's threshold guarantees at its false-reject ``budget``: above the
    ``rank``-th of ``n_good`` good scores (``n_audited`` of them audited), a good part is
    rejected with P <= ``false_reject_bound``; ``n_needed``: None when they are enough."""

    bundle_id: str
    budget: float
    n_good: int
    n_audited: int
    rank: int
    false_reject_bound: float
    n_needed: int | None = None

    @classmethod
    def of(cls, bundle_id: str, choice: ThresholdChoice) -> Certificate:
        """The certificate of a false-reject-budget ``choice`` (``ValueError`` for others)."""
        if choice.policy != "false_reject_budget" or choice.rank is None:
            raise ValueError(f"{choice.policy} thresholds carry no false-reject certificate")
        return cls(
            bundle_id=bundle_id, budget=choice.budget, n_good=choice.n_good,
            n_audited=(choice.good_sources or {}).get(AUDITED, 0), rank=choice.rank,
            false_reject_bound=float(choice.false_reject_bound or 0.0), n_needed=choice.n_needed,
        )  # fmt: skip

    @property
    def line_bound(self) -> float | None:
        """The bound counting only the audited parts as exchangeable, the bundle's own scores
        as arbitrary: P <= (n + 1 - k) / (n_audited + 1). None: nothing audited."""
        if not self.n_audited:
            return None
        return min(1.0, (self.n_good + 1 - min(self.rank, self.n_good)) / (self.n_audited + 1))

    @property
    def certified(self) -> bool:
        """The bound is within the budget."""
        return self.n_needed is None

    def still_needed(self) -> int:
        """Good scores still needed for the budget, else to rank the threshold below the
        largest good score; 0: none."""
        if self.n_needed is not None:
            return self.n_needed - self.n_good
        return max(0, fewest_below_largest(self.budget) - self.n_good)

    def describe(self) -> str:
        text = (
            f"budget {self.budget:.1%}: n={self.n_good} good ({self.n_audited} audited), "
            f"bound {self.false_reject_bound:.2%}"
        )
        if self.line_bound is not None:
            text += f" ({self.line_bound:.2%} on the audited parts alone)"
        more = self.still_needed()
        if not self.certified:
            return f"{text}; NOT certified: {more} more good parts needed"
        if more:
            return f"{text}; certified, {more} more good parts rank it below the largest"
        return f"{text}; certified"


@dataclass(frozen=True)
class Certified:
    """A threshold derived again (normalised), its certificate and the gate it passed."""

    threshold: float
    certificate: Certificate
    gate: GateDecision


def bundle_certificate(metadata: BundleMetadata) -> Certificate | None:
    """The certificate a bundle was exported with (None: not a false-reject budget)."""
    own = metadata.output_calibration
    choice = None if own is None else own.operating
    if choice is None or choice.policy != "false_reject_budget":
        return None
    return Certificate.of(metadata.bundle_id, choice)


def certify(
    metadata: BundleMetadata,
    audited: Sequence[AuditedPart],
    held_out: ValidationScores | None,
) -> Certified:
    """The threshold set again at the bundle's budget on its good calibration scores and the
    ``audited`` parts, gated on its ``held_out`` scores; ``CertificationError`` saying why not."""
    what = f"{metadata.product}/{metadata.bundle_id}"
    own = metadata.output_calibration
    choice = None if own is None else own.operating
    if own is None or choice is None or choice.policy != "false_reject_budget":
        raise CertificationError(f"{what} has no false-reject budget operating point to certify")
    if not own.good_scores:
        raise CertificationError(
            f"{what} records no good calibration scores (exported before they were kept): "
            "export it again to certify it from audited parts"
        )
    foreign = [part for part in audited if part.bundle_id != metadata.bundle_id]
    if foreign:
        part = foreign[0]
        raise CertificationError(
            f"audit part {part.inspection_id} was scored by bundle {part.bundle_id}, not "
            f"{metadata.bundle_id}: its score is on another model's scale and cannot join "
            f"{what}'s calibration set ({len(foreign)} such part(s))"
        )
    raw, weights = own.good_set()
    good = np.r_[normalize_scores(raw, metadata.normalization), [p.score for p in audited]]
    point = OperatingPoint(budget=choice.budget, miss_bound=choice.miss_bound)
    sources = {**(choice.good_sources or {}), AUDITED: len(audited)}
    new = choose_threshold(
        good, point, good_sources=sources, good_weights=np.r_[weights, np.ones(len(audited))]
    )
    if not 0.0 < new.threshold < 1.0:
        raise CertificationError(
            f"{what}: the threshold at {point.describe()} would be {new.threshold:.4f}, outside "
            "the bundle's score range (0, 1): too few good scores below its highest"
        )
    decision = held_out_gate(metadata, held_out, new.threshold)
    if not decision.passed:
        raise CertificationError(
            f"{decision.message(f'threshold {new.threshold:.4f} for {what}')}; the served "
            "threshold is unchanged"
        )
    return Certified(new.threshold, Certificate.of(metadata.bundle_id, new), decision)


def held_out_gate(
    metadata: BundleMetadata, held_out: ValidationScores | None, threshold: float
) -> GateDecision:
    """The bundle's export gate at normalised ``threshold`` on its ``held_out`` labelled
    scores, against its export's reference (its own figures when it recorded no gate) and
    with the rejects plausible at the budget (``with_budget``)."""
    if held_out is None or not held_out.scores:
        raise CertificationError(
            f"{metadata.product}/{metadata.bundle_id} ships no held-out labelled scores "
            "(validation_scores.json) to gate a new threshold on"
        )
    try:
        gate = metadata.export_record().gate
    except BundleError as exc:
        raise CertificationError(str(exc)) from exc
    figures = _figures(held_out, threshold)
    if gate is None:
        reference, tolerances = _figures(held_out, BUNDLE_THRESHOLD), GateTolerances()
    else:
        reference, tolerances = gate.reference_fp32, gate.tolerances
    decision = check_gate(figures, reference, tolerances)
    return with_budget(decision, figures, metadata.output_calibration)  # type: ignore[arg-type]


def _figures(held_out: ValidationScores, threshold: float) -> BundleFigures:
    """The held-out false-reject and miss rates at ``threshold`` (no pixel figures)."""
    scores = np.asarray(held_out.scores, dtype=np.float64)
    bad = np.asarray(held_out.labels) == 1
    flagged = is_ng(scores, threshold)
    return BundleFigures(
        false_reject_rate=float(flagged[~bad].mean()) if (~bad).any() else 0.0,
        miss_rate=float((~flagged[bad]).mean()) if bad.any() else 0.0,
        image_auroc=None, pixel_auroc=None, aupro=None, region_recall=None, ng_without_region=0,
        n_good=int((~bad).sum()), n_defective=int(bad.sum()),
    )  # fmt: skip
