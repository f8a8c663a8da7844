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
    OUT_OF_FOLD,
    OperatingPoint,
    ThresholdChoice,
    choose_threshold,
    confident_bound,
    fewest_below_largest,
    lacking_kinds,
    miss_at,
    n_needed,
)
from inspection.core.threshold import is_ng
from inspection.core.validation_scores import ValidationScores

AUDITED = "audited_good"
"""The ``good_sources`` name of confirmed-good audit parts."""
BUNDLE_THRESHOLD = 0.5
"""A bundle's own threshold on its normalised scores (``BundleMetadata.calibrated``)."""
CONFIRMED_GOOD: tuple[str, ...] = ("false_alarm", "good")
"""Review labels that confirm a part good; ``defect`` decides it bad, ``unsure`` decides nothing."""
DECIDED: tuple[str, ...] = (*CONFIRMED_GOOD, "defect")
AUDIT_WINDOW = 50
"""Audit parts are reviewed in windows of this many, oldest first; a window certifies only
when every part in it is decided (``complete_windows``)."""
REVIEW_BALANCE_LEVEL = 0.05
"""Certification refuses when NG-verdict audit parts were reviewed less completely than
OK-verdict ones: Fisher's exact one-sided test below this (``ReviewCompletion``)."""
MARGINAL_QUANTILE = 0.95
"""The certificate quotes this quantile of the line's own realised rate (Beta distribution)."""


class CertificationError(InspectionError):
    """A threshold that cannot be derived or would not pass the gate; the message says why."""


@dataclass(frozen=True)
class AuditedPart:
    """A part of the random audit sample: its normalised score and the bundle, station,
    normalisation fingerprint (``scale``; None: stored before scales were) and audit rate (1 in
    ``audit_rate``; None: not recorded) it was scored and drawn under, its verdict and its
    latest review label (None: unreviewed)."""

    inspection_id: str
    bundle_id: str
    score: float
    station_id: str = ""
    verdict: str = "OK"
    label: str | None = "good"
    audit_rate: int | None = None
    scale: str | None = None

    @property
    def decided(self) -> bool:
        return self.label in DECIDED

    @property
    def good(self) -> bool:
        return self.label in CONFIRMED_GOOD


@dataclass(frozen=True)
class ReviewCompletion:
    """How completely the audit parts of each verdict were reviewed (good or defect):
    {verdict: (decided, total)} and Fisher's exact one-sided p that NG parts were reviewed
    less (more is harmless: the NG queue labels them too, and windows count whole)."""

    by_verdict: dict[str, tuple[int, int]]
    p_value: float

    @property
    def differs(self) -> bool:
        return self.p_value < REVIEW_BALANCE_LEVEL

    def describe(self) -> str:
        rates = ", ".join(
            f"{verdict} {done}/{total} ({done / total:.0%})"
            for verdict, (done, total) in sorted(self.by_verdict.items())
            if total
        )
        return f"audit parts reviewed by verdict: {rates or 'none'}"


def review_completion(parts: Sequence[AuditedPart]) -> ReviewCompletion:
    """The decided share of NG- and OK-verdict audit ``parts`` and whether NG parts lag
    (``scipy.stats.fisher_exact``, one-sided): a reviewer who skips NG parts drops exactly the
    good parts the model scores high, and the certified threshold lands too low."""
    from scipy.stats import fisher_exact  # deferred: scipy.stats costs ~1 s at every CLI start

    counts = {v: (sum(p.decided for p in parts if p.verdict == v),
                  sum(p.verdict == v for p in parts)) for v in ("NG", "OK")}  # fmt: skip
    (ng, n_ng), (ok, n_ok) = counts["NG"], counts["OK"]
    table = [[ng, n_ng - ng], [ok, n_ok - ok]]
    p = 1.0 if min(n_ng, n_ok) == 0 else float(fisher_exact(table, alternative="less").pvalue)
    return ReviewCompletion(counts, p)


def complete_windows(
    parts: Sequence[AuditedPart], size: int = AUDIT_WINDOW
) -> tuple[list[AuditedPart], int]:
    """(the parts of the complete windows, the parts held open): ``parts`` oldest first, cut
    in windows of ``size`` (the newest may be shorter); from the first window with an
    undecided part (unreviewed or ``unsure``) on, nothing certifies, so which parts count
    depends on their order in time, never on their scores or verdicts."""
    for start in range(0, len(parts), size):
        if not all(p.decided for p in parts[start : start + size]):
            return list(parts[:start]), len(parts) - start
    return list(parts), 0


@dataclass(frozen=True)
class AuditSelection:
    """The audit parts that may certify a bundle: the confirmed-good ones of the complete
    windows (``good``), those left out and why (``left_out``: reason -> count), the parts held
    open, and the review completion by verdict."""

    good: tuple[AuditedPart, ...]
    left_out: dict[str, int]
    held_open: int
    completion: ReviewCompletion

    def refusal(self) -> str | None:
        if self.completion.differs:
            return (
                f"{self.completion.describe()}: NG parts lag (Fisher p = "
                f"{self.completion.p_value:.2g}), so the confirmed goods are not a random draw "
                "of the line's; review the audit sample blind and whole (Review queue, Show: "
                "Audit sample, oldest first), then certify"
            )
        return None

    def describe(self) -> str:
        text = self.completion.describe()
        if self.held_open:
            text += f"; {self.held_open} parts wait in open windows (unreviewed or unsure)"
        for reason, count in self.left_out.items():
            text += f"; {count} left out: {reason}"
        return text


def select_audited(
    parts: Sequence[AuditedPart], bundle_id: str, scale: str, size: int = AUDIT_WINDOW
) -> AuditSelection:
    """The audit ``parts`` (oldest first, reviewed or not) that may certify ``bundle_id`` at
    normalisation fingerprint ``scale``: others' scores are on another scale and left out, named."""
    left_out: dict[str, int] = {}
    mine = []
    for part in parts:
        if part.bundle_id != bundle_id:
            reason = "scored by another bundle"
        elif part.scale is None:
            reason = "stored before score scales were recorded"
        elif part.scale != scale:
            reason = (
                f"scored at station {part.station_id or '?'} under a re-calibrated "
                f"normalisation ({part.scale}), not the bundle's signed one ({scale})"
            )
        else:
            mine.append(part)
            continue
        left_out[reason] = left_out.get(reason, 0) + 1
    rated = [p for p in mine if p.audit_rate is not None]
    if rated and len(rated) < len(mine):
        left_out["audit rate not recorded"] = len(mine) - len(rated)
        mine = rated
    complete, held_open = complete_windows(mine, size)
    good = tuple(p for p in complete if p.good)
    return AuditSelection(good, left_out, held_open, review_completion(mine))


def line_bounds(
    parts: Sequence[AuditedPart], threshold: float
) -> tuple[float | None, dict[str, float]]:
    """(production's bound, {station: its bound}) on the good ``parts`` alone at normalised
    ``threshold``: each part weighs its audit rate (1 / its inclusion probability), a new part
    the largest weight: (sum of weights >= threshold + max) / (sum + max), the weighted
    split-conformal p-value of the threshold (Tibshirani et al. 2019); one rate: (m + 1) /
    (n + 1). None: no parts."""
    if not parts:
        return None, {}

    def bound(group: Sequence[AuditedPart]) -> float:
        weights = np.array([p.audit_rate or 1 for p in group], dtype=np.float64)
        above = np.array([p.score for p in group]) >= threshold
        top = float(weights.max())
        return min(1.0, (float(weights[above].sum()) + top) / (float(weights.sum()) + top))

    stations = sorted({p.station_id for p in parts})
    return bound(parts), {s: bound([p for p in parts if p.station_id == s]) for s in stations}


@dataclass(frozen=True)
class Certificate:
    """What a bundle's threshold guarantees at its false-reject ``budget``: above the
    ``rank``-th of ``n_good`` good scores (``n_audited`` of them audited), a good part
    exchangeable with them is rejected with P <= ``false_reject_bound`` (marginally, over the
    draw of the n); ``n_needed``: None when they are enough. ``sources``: good scores by
    source; ``line``: the bound on the audited parts alone, weighted by their audit rates,
    ``stations``: per station (None: recorded before #93, ``line_bound`` then the rank bound)."""

    bundle_id: str
    budget: float
    n_good: int
    n_audited: int
    rank: int
    false_reject_bound: float
    n_needed: int | None = None
    sources: dict[str, int] | None = None
    line: float | None = None
    stations: dict[str, float] | None = None

    OPTIONAL = ("sources", "line", "stations")
    """Fields a signed row leaves out when None, so rows signed before them verify the same."""

    @classmethod
    def of(
        cls, bundle_id: str, choice: ThresholdChoice, audited: Sequence[AuditedPart] = ()
    ) -> Certificate:
        """The certificate of a false-reject-budget ``choice`` (``ValueError`` for others), its
        line bounds on the good ``audited`` parts among its scores."""
        if choice.policy != "false_reject_budget" or choice.rank is None:
            raise ValueError(f"{choice.policy} thresholds carry no false-reject certificate")
        line, stations = line_bounds(audited, choice.threshold)
        return cls(
            bundle_id=bundle_id, budget=choice.budget, n_good=choice.n_good,
            n_audited=(choice.good_sources or {}).get(AUDITED, 0), rank=choice.rank,
            false_reject_bound=float(choice.false_reject_bound or 0.0), n_needed=choice.n_needed,
            sources=dict(choice.good_sources or {}) or None,
            line=None if line is None else round(line, 6),
            stations={k: round(v, 6) for k, v in stations.items()} or None,
        )  # fmt: skip

    @property
    def line_bound(self) -> float | None:
        """The bound on the audited parts alone (None: nothing audited): ``line`` when
        recorded, else counting the bundle's own scores as arbitrary, (n + 1 - k) /
        (n_audited + 1)."""
        if not self.n_audited:
            return None
        if self.line is not None:
            return self.line
        return min(1.0, (self.n_good + 1 - min(self.rank, self.n_good)) / (self.n_audited + 1))

    @property
    def exchangeable(self) -> bool:
        """False when out-of-fold training scores helped set the threshold."""
        return OUT_OF_FOLD not in (self.sources or {})

    @property
    def certified(self) -> bool:
        """The bound is within the budget and rests on scores exchangeable with new parts."""
        return self.n_needed is None and self.exchangeable

    @property
    def certified_for_line(self) -> bool:
        """``certified`` and the audited parts alone keep the budget, at every station."""
        return self.certified and self.line_bound is not None and self.line_shortfall() is None

    def realised_quantile(self, level: float = MARGINAL_QUANTILE) -> float:
        """The ``level`` quantile of the realised rate over calibration draws of this n and
        rank, Beta(n + 1 - k, k) (``confident_bound``)."""
        return confident_bound(self.n_good, self.rank, level)

    @property
    def never_trained(self) -> int:
        """Good scores of images the model never trained on (calibration, validation, audited)."""
        return self.n_good - (self.sources or {}).get(OUT_OF_FOLD, 0)

    def still_needed(self) -> int:
        """Good images never trained on still to add for the bound to certify the budget, else
        to rank the threshold below the largest good score; 0: none. Out-of-fold training
        scores never certify, so while they set the threshold the count is what the
        never-trained images lack of ``n_needed(budget)`` (99 at 1 %)."""
        if not self.exchangeable:
            return max(0, n_needed(self.budget) - self.never_trained)
        if self.n_needed is not None:
            return self.n_needed - self.n_good
        return max(0, fewest_below_largest(self.budget) - self.n_good)

    def shortfall(self) -> str | None:
        """Why the bound does not certify its budget, in counts and a QA engineer's words (None:
        it does); the verdict's lack and ``describe``'s refusal both print it."""
        bound = f"{self.n_good} good images bound them at {self.false_reject_bound:.2%}"
        if not self.exchangeable:
            why = (
                f"{bound}, but {self.n_good - self.never_trained} of the {self.n_good} come from "
                f"training images, which do not certify new parts: {n_needed(self.budget)} "
                f"never-trained good images are needed, it has {self.never_trained}"
            )
        elif self.n_needed is not None:
            why = f"{bound}, {self.n_needed} are needed"
        else:
            return None
        return f"its false alarms are not shown within the {self.budget:.1%} budget: {why}"

    def line_shortfall(self) -> str | None:
        """Why the line's own audited good parts do not keep the budget, with their bounds (None:
        they do, or nothing is audited); the verdict's lack and ``describe`` both print it."""
        line = self.line_bound
        over = {s: b for s, b in (self.stations or {}).items() if b > self.budget + 1e-12}
        if line is None or (line <= self.budget + 1e-12 and not over):
            return None
        where = "".join(f", station {s} {b:.2%}" for s, b in over.items())
        return (
            f"on the line's {self.n_audited} audited good parts its false alarms are bound at "
            f"{line:.2%}{where}, above the {self.budget:.1%} budget"
        )

    def marginal(self) -> str:
        """'0.72% on average over calibration sets, below 2.15% with 95% probability': what the
        bound is (marginal over the draw of the n good scores) and the ``realised_quantile``."""
        return (
            f"{self.false_reject_bound:.2%} on average over calibration sets, below "
            f"{self.realised_quantile():.2%} with {MARGINAL_QUANTILE:.0%} probability"
        )

    def describe(self) -> str:
        shortfall = self.shortfall()
        if shortfall is not None:
            return (
                f"NOT certified ({self.n_audited} audited): {shortfall}; "
                f"{self.still_needed()} more never-trained or audited good parts certify it"
            )
        text = (
            f"budget {self.budget:.1%}: n={self.n_good} good ({self.n_audited} audited), bound "
            f"{self.marginal()}"
        )
        line = self.line_bound
        if line is None:
            return (
                f"{text}; certified for parts exchangeable with its calibration images, "
                "not yet checked on the line's own audited parts (none audited)"
            )
        text += f"; on the audited parts alone {line:.2%}"
        stations = self.stations if len(self.stations or {}) > 1 else {}
        over = [s for s, b in stations.items() if b > self.budget + 1e-12]
        if stations:
            text += " (" + ", ".join(f"{s} {b:.2%}" for s, b in stations.items()) + ")"
        if self.certified_for_line:
            more = self.still_needed()
            tail = f", {more} more good parts rank it below the largest" if more else ""
            return f"{text}; certified for the line{tail}"
        where = ", ".join(over) if over else "the line"
        return (
            f"{text}; certified for parts exchangeable with its calibration set, NOT for "
            f"{'station(s) ' if over else ''}{where}: {self.line_shortfall()}"
        )


@dataclass(frozen=True)
class Certified:
    """A threshold derived again (normalised), its certificate and the gate it passed."""

    threshold: float
    certificate: Certificate
    gate: GateDecision
    selection: AuditSelection | None = None


def bundle_certificate(metadata: BundleMetadata) -> Certificate | None:
    """The certificate a bundle was exported with (None: not a false-reject budget)."""
    own = metadata.output_calibration
    choice = None if own is None else own.operating
    if choice is None or choice.policy != "false_reject_budget":
        return None
    return Certificate.of(metadata.bundle_id, choice)


def certified_choice(
    own: np.ndarray,
    own_weights: np.ndarray,
    own_sources: Sequence[str],
    audited: Sequence[AuditedPart],
    point: OperatingPoint,
    bundle_id: str,
) -> tuple[ThresholdChoice, Certificate]:
    """The threshold at ``point`` on a bundle's (G,) normalised good scores ``own`` (each
    ``own_weights`` images, from ``own_sources``) and the confirmed-good ``audited`` parts, and
    its certificate. Out-of-fold scores are dropped once the never-trained and audited ones
    reach ``n_needed(budget)``: the valid certificate first (docs/statistics.md)."""
    sources = np.asarray(own_sources, dtype=object)
    oof = sources == OUT_OF_FOLD
    never_trained = round(float(own_weights[~oof].sum())) + len(audited)
    if oof.any() and never_trained >= n_needed(point.budget):
        own, own_weights, sources = own[~oof], own_weights[~oof], sources[~oof]
    counts: dict[str, int] = {}
    for name, weight in zip(sources, own_weights, strict=True):
        counts[str(name)] = counts.get(str(name), 0) + float(weight)
    counts = {name: round(total) for name, total in counts.items()}
    if audited:
        counts[AUDITED] = len(audited)
    good = np.r_[own, [p.score for p in audited]]
    weights = np.r_[own_weights, np.ones(len(audited))]
    choice = choose_threshold(good, point, good_sources=counts, good_weights=weights)
    return choice, Certificate.of(bundle_id, choice, audited)


def certify(
    metadata: BundleMetadata,
    audited: Sequence[AuditedPart],
    held_out: ValidationScores | None,
) -> Certified:
    """The threshold set again at the bundle's budget on its good calibration scores and the
    ``audited`` parts (its random audit sample, oldest first, reviewed or not: ``select_audited``
    keeps the confirmed goods of complete windows on its signed scale), gated on its
    ``held_out`` scores; ``CertificationError`` saying why not."""
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
    selection = select_audited(audited, metadata.bundle_id, metadata.normalization.fingerprint)
    refusal = selection.refusal()
    if refusal is not None:
        raise CertificationError(f"{what}: {refusal}")
    raw, weights = own.good_set()
    point = OperatingPoint(budget=choice.budget, miss_bound=choice.miss_bound)
    new, certificate = certified_choice(
        normalize_scores(raw, metadata.normalization).astype(np.float64), weights,
        own.score_sources(), selection.good, point, metadata.bundle_id,
    )  # fmt: skip
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
    return Certified(new.threshold, certificate, decision, selection)


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
    calibration = metadata.output_calibration
    decision = with_budget(decision, figures, calibration)  # type: ignore[arg-type]
    point = None if calibration is None else calibration.operating
    newly = () if point is None else newly_lacking(held_out, threshold, point.miss_bound)
    if not newly:
        return decision
    return GateDecision(False, (*decision.failures, *newly), decision.checks)


def newly_lacking(held_out: ValidationScores, threshold: float, bound: float) -> tuple[str, ...]:
    """One sentence per defect kind of ``held_out`` lacking at normalised ``threshold`` (its
    exact 95 % miss interval reaching above ``bound``) that is not at the bundle's own 0.5:
    a pooled miss rate within tolerance can hide one kind let through."""
    if not held_out.defect_types:
        return ()
    scores, labels, kinds = held_out.scores, held_out.labels, held_out.defect_types
    now = miss_at(scores, labels, kinds, threshold)
    own = miss_at(scores, labels, kinds, BUNDLE_THRESHOLD)
    return tuple(
        f"{kind} newly lacking: misses {now[kind].missed}/{now[kind].n} (95% interval up to "
        f"{now[kind].interval.high:.1%}, above the {bound:.0%} miss bound; "
        f"{own[kind].missed}/{own[kind].n} at the bundle's own threshold)"
        for kind in lacking_kinds(now, bound)
        if kind not in lacking_kinds(own, bound)
    )


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
