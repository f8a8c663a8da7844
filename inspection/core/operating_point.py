"""A line's operating point: which raw score threshold a product runs at, and what it costs.

Policies of ``OperatingPoint``: ``false_reject_budget`` (default 1 %), split-conformal: the
threshold sits just above the k-th smallest of n good scores, k = ceil((n + 1) (1 - budget)),
so a new exchangeable good part is rejected with P <= (n + 1 - k) / (n + 1) <= budget (k > n:
above the largest, ``n_needed`` says how many are needed); ``f1``: the image-F1 optimum;
``max_miss``: the highest threshold missing at most ``max_miss`` of the calibration defects.
1 % because operators bypass a station above ~8-10 % false alarms, and ~100 good scores reach it.
A defect kind not shown (exact 95 % interval) to miss at most ``miss_bound`` is NOT LINE-READY
(``lacking_kinds``); ``within_budget`` refuses only rejects the budget makes implausible.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from inspection.core.bootstrap import Interval, count_interval, rate_interval
from inspection.core.errors import ConfigError

Policy = Literal["false_reject_budget", "f1", "max_miss"]
POLICIES: tuple[str, ...] = ("false_reject_budget", "f1", "max_miss")
DEFAULT_BUDGET = 0.01
MAX_BUDGET = 0.5
"""The largest false-reject budget an operating point may set."""
DEFAULT_MISS_BOUND = 0.10
"""A defect kind not shown (exact 95 % interval) to miss at most this share: NOT LINE-READY."""
BUDGET_CONFIDENCE = 0.95
"""A budget saved on the dashboard holds with this probability over its sample
(``choose_threshold(confidence=)``)."""
BUDGET_TEST_LEVEL = 0.05
"""A bundle is refused when its rejects among held-out good parts have a one-sided binomial
probability below this at the budget (``within_budget``)."""
MAX_TRANSFER_RESIDUAL = 0.05
"""Carried out-of-fold scores (``fit_transfer``) are used as they are only when the line's
largest residual is at most this share of the threshold's margin above the median good score
(``ScoreTransfer.residual_share``; |threshold| is no scale: fused, it sits near 0); above,
they are ``convolved`` with the residuals and the rise recorded (``transfer_raise``)."""
OUT_OF_FOLD = "out_of_fold_train"
"""The ``good_sources`` name of the training images' out-of-fold scores."""
NOT_EXCHANGEABLE = (
    "resting on out-of-fold training scores, which are not exchangeable with new parts: "
    "new parts may be rejected more often than the bound"
)


@dataclass(frozen=True)
class OperatingPoint:
    """How a product sets its image threshold (see the module docstring): ``budget`` in
    (0, 0.5], ``max_miss`` in [0, 1) (its policy's target), ``miss_bound`` (``lacking_kinds``)."""

    policy: Policy = "false_reject_budget"
    budget: float = DEFAULT_BUDGET
    max_miss: float = 0.05
    miss_bound: float = DEFAULT_MISS_BOUND

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ConfigError(
                f"operating_point.policy: {self.policy!r} is none of {', '.join(POLICIES)}"
            )
        ranges = {
            "budget": (0.0 < self.budget <= MAX_BUDGET, f"(0, {MAX_BUDGET}]"),
            "max_miss": (0.0 <= self.max_miss < 1.0, "[0, 1)"),
            "miss_bound": (0.0 <= self.miss_bound <= 1.0, "[0, 1]"),
        }
        for name, (ok, interval) in ranges.items():
            if not ok:
                value = getattr(self, name)
                raise ConfigError(f"operating_point.{name}: must be in {interval}, got {value}")

    def describe(self) -> str:
        return {
            "false_reject_budget": f"false-reject budget {self.budget:.1%}",
            "max_miss": f"max miss {self.max_miss:.1%}",
        }.get(self.policy, "F1-optimal")


@dataclass(frozen=True)
class ThresholdChoice:
    """The raw image threshold (NG when ``score >= threshold``) an ``OperatingPoint`` chose on
    good scores from ``good_sources`` (e.g. ``{"out_of_fold_train": 240, "validation": 18}``).
    Budget policy only: ``rank`` k and ``false_reject_bound``, the guaranteed false-reject
    probability (above ``budget`` when too few: ``n_needed``). ``calibration_false_reject``/
    ``calibration_miss``: the rates on the calibration scores themselves."""

    threshold: float
    policy: Policy
    budget: float
    max_miss: float
    n_good: int
    n_defective: int = 0
    rank: int | None = None
    false_reject_bound: float | None = None
    calibration_false_reject: float = 0.0
    calibration_miss: float | None = None
    n_needed: int | None = None
    good_sources: dict[str, int] | None = None
    miss_bound: float = DEFAULT_MISS_BOUND
    transfer_residual: float | None = None
    """``ScoreTransfer.residual_share`` of the line that carried out-of-fold scores here (None:
    none carried)."""
    transfer_raise: float | None = None
    """How far the threshold rose because the carried scores were ``convolved`` with the
    line's residuals (None: carried as they are)."""
    n_below_largest: int | None = None
    """Threshold above the largest good score (budget only): ``more_good_estimate``'s fewest
    good scores that put it below, and the miss there (None: no defects)."""
    miss_below_largest: float | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.threshold):
            raise ValueError(f"threshold must be finite, got {self.threshold}")
        if self.n_good < 0 or self.n_defective < 0:
            raise ValueError("calibration counts must be >= 0")

    @property
    def sufficient(self) -> bool:
        """False when the good scores were too few to guarantee the budget."""
        return self.n_needed is None

    @property
    def exchangeable(self) -> bool:
        """False when out-of-fold training scores helped set the threshold: they are not
        exchangeable with new parts, so the bound may understate their false rejects
        (``pools_out_of_fold``)."""
        return OUT_OF_FOLD not in (self.good_sources or {})

    @property
    def bound_guaranteed(self) -> bool:
        """False when carried scores set the threshold through a line whose residual is above
        ``MAX_TRANSFER_RESIDUAL`` of its margin and their residuals were not accounted for."""
        if self.transfer_residual is None or self.transfer_raise is not None:
            return True
        return self.transfer_residual <= MAX_TRANSFER_RESIDUAL

    def describe(self) -> str:
        if self.policy != "false_reject_budget":
            miss = "" if self.calibration_miss is None else f", miss {self.calibration_miss:.1%}"
            return (
                f"{self.policy} threshold {self.threshold:.4g} on {self.n_good} good + "
                f"{self.n_defective} defective (false reject {self.calibration_false_reject:.1%}"
                f"{miss} on them)"
            )
        text = (
            f"budget {self.budget:.1%}: threshold {self.threshold:.4g} above the {self.rank}-th "
            f"of {self.n_good} good scores, false reject <= {self.false_reject_bound:.2%}"
        )
        if self.transfer_raise is not None:
            text += f" (raised by {self.transfer_raise:.3g} for the carried scores' residuals)"
        if not self.sufficient:
            text += f" (too few good scores for the budget: {self.n_needed} needed)"
        if not self.exchangeable:
            text += f"; {NOT_EXCHANGEABLE}"
        if self.n_below_largest is not None and self.miss_below_largest is not None:
            text += (
                f"; it sits above the largest good score, missing {self.calibration_miss:.0%} of "
                f"the calibration defects: {self.n_below_largest} good images would put it below "
                f"the largest, missing ~{self.miss_below_largest:.0%} (estimated)"
            )
        return text


def conformal_rank(n: int, budget: float) -> int:
    """k = ceil((n + 1) (1 - budget)): the good score the threshold must sit above (1-based)."""
    if n < 0 or not 0.0 < budget < 1.0:
        raise ValueError(f"need n >= 0 and 0 < budget < 1, got n={n}, budget={budget}")
    # round before ceil: (n + 1) * 0.99 = 99.00000000000001 for n = 99 must give 99
    return math.ceil(round((n + 1) * (1.0 - budget), 9))


def n_needed(budget: float) -> int:
    """The fewest good calibration scores for which the budget can be guaranteed (k <= n)."""
    n = max(1, math.ceil(round((1.0 - budget) / budget, 9)) - 1)
    while conformal_rank(n, budget) > n:
        n += 1
    return n


def fewest_below_largest(budget: float) -> int:
    """The fewest good scores whose conformal rank k leaves one above it (199 at 1 %)."""
    n = n_needed(budget) + 1
    while conformal_rank(n, budget) > n - 1:
        n += 1
    return n


def pools_out_of_fold(budget: float, n_never_trained: int) -> bool:
    """Whether out-of-fold training scores join the good scores that set the threshold: only
    while the never-trained good images are fewer than ``n_needed(budget)`` (99 at 1 %): from
    there a valid certificate rests on them alone, since a model scores its own training
    images lower even out of fold (docs/statistics.md)."""
    return n_never_trained < n_needed(budget)


def extra_good_scores(
    budget: float,
    n_validation: int | None,
    held_aside: np.ndarray | None,
    out_of_fold: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None, dict[str, int]]:
    """Good scores joining ``n_validation`` validation ones (None: those do not calibrate) in
    setting a threshold, the images each counts for (None: one each) and their ``good_sources``:
    ``out_of_fold`` (``weights``: ``convolved``) while ``pools_out_of_fold``, then ``held_aside``."""
    sources = {} if n_validation is None else {"validation": n_validation}
    held = np.empty(0) if held_aside is None else held_aside
    extra = np.empty(0)
    if out_of_fold is not None and pools_out_of_fold(budget, held.size + (n_validation or 0)):
        extra = out_of_fold
        sources[OUT_OF_FOLD] = len(extra) if weights is None else round(weights.sum())
    else:
        weights = None
    if held.size:
        sources["calibration"] = int(held.size)
        weights = None if weights is None else np.r_[weights, np.ones(held.size)]
    return np.r_[extra, held], weights, sources


def conformal_bound(n: int, rank: int) -> float:
    """P(a new exchangeable good score lands above the ``rank``-th of n) = (n + 1 - k) / (n + 1)."""
    return (n + 1 - min(rank, n)) / (n + 1)


def confident_rank(n: int, budget: float, confidence: float) -> int:
    """The lowest k for which a threshold above the k-th of n good scores rejects at most
    ``budget`` with probability ``confidence`` over the draw of the n (n + 1: too few). The
    reject rate there is Beta(n + 1 - k, k): P(Binomial(n, 1 - budget) >= k) <= 1 - level."""
    if n < 0 or not 0.0 < budget < 1.0 or not 0.0 < confidence < 1.0:
        raise ValueError(f"need n >= 0, 0 < budget < 1, 0 < confidence < 1: {n}, {budget}")
    from scipy.stats import binom  # deferred: scipy.stats costs ~1 s at every CLI start

    risk = 1.0 - confidence
    rank = min(max(int(binom.isf(risk, n, 1.0 - budget)) + 1, 1), n + 1)
    while rank > 1 and binom.sf(rank - 2, n, 1.0 - budget) <= risk:
        rank -= 1
    while rank <= n and binom.sf(rank - 1, n, 1.0 - budget) > risk:
        rank += 1
    return rank


def confident_bound(n: int, rank: int, confidence: float) -> float:
    """The reject rate above the ``rank``-th of n good scores is at most this with probability
    ``confidence`` (the Beta(n + 1 - k, k) quantile; above the largest when rank > n)."""
    from scipy.stats import beta  # deferred: scipy.stats costs ~1 s at every CLI start

    k = min(rank, n)
    return float(beta.ppf(confidence, n + 1 - k, k))


def confident_n_needed(budget: float, confidence: float) -> int:
    """The fewest good scores for which ``confident_rank`` exists (299 at 1 % and 95 %)."""
    n = max(1, math.floor(math.log(1.0 - confidence) / math.log(1.0 - budget)))
    while confident_rank(n, budget, confidence) > n:
        n += 1
    return n


def choose_threshold(
    good_scores: np.ndarray,
    point: OperatingPoint,
    *,
    defect_scores: np.ndarray | None = None,
    good_sources: Mapping[str, int] | None = None,
    confidence: float | None = None,
    good_weights: np.ndarray | None = None,
) -> ThresholdChoice:
    """The raw threshold ``point`` sets on (G,) good and (D,) defective calibration scores
    (without defects only ``false_reject_budget`` applies). ``confidence`` (budget only): keep
    the budget with this probability for these very scores (``confident_rank``), not only
    marginally; ``false_reject_bound`` is then the rate's upper bound at that confidence.
    ``good_weights`` (G,) > 0 summing to a whole number n (``convolved``; default 1 each): the
    good images counted, rank k and bound are of n, k reached by cumulative weight."""
    good = _finite(good_scores, "good_scores")
    weights = _weights(good_weights, good.size)
    given = None if (weights == 1.0).all() else weights  # unit weights: the plain estimate
    bad = _finite(defect_scores, "defect_scores") if defect_scores is not None else np.empty(0)
    if good.size == 0:
        raise ConfigError("an operating point needs at least one good calibration score")
    if point.policy != "false_reject_budget" and bad.size == 0:
        raise ConfigError(
            f"operating_point.policy {point.policy!r} needs defect images in the calibration "
            "split; a good-only product uses policy false_reject_budget"
        )
    common = dict(
        policy=point.policy, budget=point.budget, max_miss=point.max_miss,
        n_good=round(float(weights.sum())), n_defective=int(bad.size),
        good_sources=dict(good_sources) if good_sources else None, miss_bound=point.miss_bound,
    )  # fmt: skip
    if point.policy == "false_reject_budget":
        threshold, rank, bound, needed = _budget_threshold(good, point.budget, confidence, weights)
        common.update(rank=rank, false_reject_bound=round(bound, 6), n_needed=needed)
        if rank == common["n_good"] and bad.size and confidence is None:
            common.update(more_good_estimate(good, bad, point.budget, given))
    elif point.policy == "f1":
        labels = np.r_[np.zeros(good.size), np.ones(bad.size)]
        threshold = f1_adaptive_threshold(np.r_[good, bad], labels)[0]
    else:
        threshold = _max_miss_threshold(bad, point.max_miss)
    return ThresholdChoice(
        threshold=threshold,
        calibration_false_reject=round(float(np.average(good >= threshold, weights=weights)), 6),
        calibration_miss=round(float((bad < threshold).mean()), 6) if bad.size else None,
        **common,
    )


def _budget_threshold(
    good: np.ndarray,
    budget: float,
    confidence: float | None = None,
    weights: np.ndarray | None = None,
) -> tuple[float, int, float, int | None]:
    """(threshold, k, bound, n_needed or None): strictly above the k-th smallest good score,
    half-way to the next larger one (any value in between keeps the guarantee; the middle
    leaves room for an exported graph's rounding). With ``weights`` (summing to n): above the
    smallest score at which their cumulative sum reaches k."""
    order = np.argsort(good, kind="stable")
    ordered = good[order]
    cumulative = np.cumsum(np.ones(good.size) if weights is None else weights[order])
    n = round(float(cumulative[-1]))
    if confidence is None:
        rank = conformal_rank(n, budget)
        bound = conformal_bound(n, rank)
        needed = None if rank <= n else n_needed(budget)
    else:
        rank = confident_rank(n, budget, confidence)
        bound = confident_bound(n, rank, confidence)
        needed = None if rank <= n else confident_n_needed(budget, confidence)
    k = min(rank, n)
    at = float(ordered[min(int(np.searchsorted(cumulative, k - 1e-9)), good.size - 1)])
    above = ordered[ordered > at]
    span = float(ordered[-1] - ordered[0]) or abs(at) or 1.0
    threshold = 0.5 * (at + float(above[0])) if above.size else at + 0.05 * span
    return threshold, k, bound, needed


def more_good_estimate(
    good: np.ndarray, bad: np.ndarray, budget: float, weights: np.ndarray | None = None
) -> dict[str, Any]:
    """What more good scores buy when the threshold sits above the largest of ``good``:
    ``n_below_largest`` (``fewest_below_largest``) and ``miss_below_largest``, the share of
    ``bad`` below the k / (N + 1) quantile of ``good`` (a plug-in estimate, not a guarantee)."""
    count = len(good) if weights is None else round(float(np.sum(weights)))
    n = max(fewest_below_largest(budget), count + 1)
    level = conformal_rank(n, budget) / (n + 1)
    method = "linear" if weights is None else "inverted_cdf"
    level = np.quantile(good, level, weights=weights, method=method)
    return {"n_below_largest": n, "miss_below_largest": round(float((bad < level).mean()), 4)}


def f1_adaptive_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(threshold, F1): the value of ``scores`` maximising F1 of ``scores >= t`` vs ``labels``,
    as anomalib's ``F1AdaptiveThreshold`` (no positives: the highest score; none negative: the
    lowest). Float32 scores (pixel maps) are sorted as float32: widening is exact and keeps their
    order, so the thresholds and F1 are those of float64, sorted several times faster."""
    scores = np.asarray(scores)
    scores = scores.reshape(-1).astype(
        np.float32 if scores.dtype == np.float32 else np.float64, copy=False
    )
    labels = np.asarray(labels).astype(bool).reshape(-1)
    if len(scores) == 0:
        raise ValueError("cannot calibrate a threshold on no values")
    if not labels.any():
        return float(scores.max()), 0.0
    if labels.all():
        return float(scores.min()), 1.0
    # scikit-learn's precision_recall_curve from plain sorts (an argsort of millions of pixels
    # is slow): same floats. Only positive scores are tried: raising t to the next positive
    # score keeps every hit and drops at least the negative at t, so F1's maximum, and the
    # lowest t reaching it, lie there
    positives, negatives = np.sort(scores[labels]), np.sort(scores[~labels])
    thresholds = np.unique(positives)
    tp = len(positives) - np.searchsorted(positives, thresholds)
    fp = len(negatives) - np.searchsorted(negatives, thresholds)
    precision, recall = tp / (tp + fp), tp / len(positives)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    best = int(np.argmax(f1))
    return float(thresholds[best]), float(f1[best])


def _max_miss_threshold(bad: np.ndarray, max_miss: float) -> float:
    """The highest t with share(bad < t) <= max_miss: the (j+1)-th smallest defect score,
    j = floor(max_miss * D) misses allowed."""
    ordered = np.sort(bad)
    allowed = math.floor(round(max_miss * len(ordered), 9))
    return float(ordered[min(allowed, len(ordered) - 1)])


def _weights(weights: np.ndarray | None, size: int) -> np.ndarray:
    """(size,) positive weights summing to a whole number (default: 1 each)."""
    if weights is None:
        return np.ones(size)
    array = _finite(weights, "good_weights")
    total = float(array.sum())
    if array.size != size or (array <= 0).any() or abs(total - round(total)) > 1e-6:
        raise ValueError(
            f"good_weights: need {size} positive weights summing to a whole number, got "
            f"{array.size} summing to {total}"
        )
    return array


def _finite(values: np.ndarray | Sequence[float], name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: all scores must be finite")
    return array


def within_budget(
    rejected: int, n_good: int, budget: float, level: float = BUDGET_TEST_LEVEL
) -> bool:
    """Whether ``rejected`` of ``n_good`` held-out good parts is plausible at a false-reject
    rate of ``budget``: P(X >= rejected), X ~ Binomial(n_good, budget), is at least ``level``
    (exact binomial tail, ``scipy.stats.binom``, for any n)."""
    if not 0 <= rejected <= n_good:
        raise ValueError(f"need 0 <= rejected <= n_good, got {rejected} of {n_good}")
    from scipy.stats import binom  # deferred: scipy.stats costs ~1 s at every CLI start

    return bool(binom.sf(rejected - 1, n_good, budget) >= level)


def allowed_rejects(n_good: int, budget: float, level: float = BUDGET_TEST_LEVEL) -> int:
    """The most rejects among ``n_good`` held-out good parts ``within_budget`` accepts."""
    from scipy.stats import binom  # deferred: scipy.stats costs ~1 s at every CLI start

    # the tail's inverse is a float estimate: settle the boundary on within_budget itself
    allowed = min(max(int(binom.isf(level, n_good, budget)), 0), n_good)
    while allowed < n_good and within_budget(allowed + 1, n_good, budget, level):
        allowed += 1
    while allowed > 0 and not within_budget(allowed, n_good, budget, level):
        allowed -= 1
    return allowed


# ------------------------------------------------------------------- miss rates
@dataclass(frozen=True)
class KindMiss:
    """One defect kind's miss rate at a threshold: ``missed`` of ``n`` with its exact interval."""

    kind: str
    n: int
    missed: int
    interval: Interval

    @property
    def rate(self) -> float:
        return self.missed / self.n

    def to_mapping(self) -> dict[str, Any]:
        return {"n": self.n, "missed": self.missed, **self.interval.to_dict()}

    def __str__(self) -> str:
        return f"{self.kind} {self.missed}/{self.n} missed, {self.interval}"


def miss_by_kind(
    missed: np.ndarray,
    kinds: Sequence[str],
    *,
    level: float = 0.95,
) -> dict[str, KindMiss]:
    """Per defect kind: (M,) bool ``missed`` of M defective images with their M ``kinds``."""
    missed = np.asarray(missed, dtype=bool).reshape(-1)
    names = np.asarray(list(kinds), dtype=object)
    if len(names) != len(missed):
        raise ValueError(f"missed has {len(missed)} entries but kinds {len(names)}")
    result = {}
    for kind in sorted({str(k) for k in names}):
        hits = missed[names == kind]
        interval = rate_interval(hits, level=level)
        result[kind] = KindMiss(kind, int(hits.size), int(hits.sum()), interval)
    return result


def miss_at(
    scores: np.ndarray,
    labels: np.ndarray,
    kinds: Sequence[str],
    threshold: float,
    *,
    level: float = 0.95,
) -> dict[str, KindMiss]:
    """``miss_by_kind`` of the defective images among (N,) raw scores at ``threshold``."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    bad = np.asarray(labels).astype(bool).reshape(-1)
    names = [k for k, b in zip(kinds, bad, strict=True) if b]
    return miss_by_kind(scores[bad] < threshold, names, level=level)


def lacking_kinds(miss: Mapping[str, KindMiss], bound: float) -> tuple[str, ...]:
    """Defect kinds whose miss-rate interval reaches above ``bound`` (sorted): not line-ready."""
    return tuple(sorted(k for k, m in miss.items() if m.interval.high > bound + 1e-12))


def defects_needed(bound: float, level: float = 0.95, missed: int = 0) -> int | None:
    """The fewest images of a defect kind that, with ``missed`` of them missed and no more,
    show a miss rate <= ``bound`` (the exact interval's upper end; none missed:
    1 - ((1 - level) / 2) ** (1 / n)); None when ``bound`` is 0 (no finite sample shows it)."""
    if bound <= 0.0:
        return None
    n = max(1, math.ceil(math.log((1.0 - level) / 2.0) / math.log1p(-min(bound, 0.5)) - 1e-9))
    n = max(n, missed + 1)
    while n > missed + 1 and count_interval(missed, n - 1, level=level).high <= bound + 1e-12:
        n -= 1
    while count_interval(missed, n, level=level).high > bound + 1e-12:
        n += 1 if n < 64 else max(1, n // 16)
    while n > missed + 1 and count_interval(missed, n - 1, level=level).high <= bound + 1e-12:
        n -= 1
    return n


DEFAULT_VAL_FRACTION = 0.3
"""The share of each test/<kind>/ (and of test/good) that sets the threshold (``val_fraction``);
the rest is held out and measures the model."""


def validation_count(n: int, fraction: float = DEFAULT_VAL_FRACTION) -> int:
    """How many of a test kind's ``n`` images set the threshold: ``round(n * fraction)``, and
    of two or more at least one and never all (``training.train.split_validation``)."""
    count = round(n * fraction)
    return min(max(count, 1), n - 1) if n >= 2 and fraction > 0 else count


def folder_count(held_out: int, fraction: float = DEFAULT_VAL_FRACTION) -> int:
    """The fewest images in test/<kind>/ that leave ``held_out`` of them held out once
    ``validation_count`` set the threshold (36 held out at 0.3: 51); ``ValueError`` for a
    ``fraction`` outside [0, 1) (``ModelConfig.val_fraction``'s range)."""
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction!r}")
    n = held_out
    while n - validation_count(n, fraction) < held_out:
        n += 1
    return n


# --------------------------------------------------------------- curve, pixels
@dataclass(frozen=True)
class CurvePoint:
    """Reject rate on good parts and miss rate per defect kind at one raw threshold."""

    threshold: float
    false_reject_rate: float
    miss_rate: dict[str, float]


def operating_curve(
    good_scores: np.ndarray,
    defect_scores: np.ndarray,
    defect_kinds: Sequence[str],
) -> tuple[CurvePoint, ...]:
    """Reject rate vs per-kind miss rate at every distinct score (and +inf) as threshold, of
    raw ``good_scores`` (G,) and ``defect_scores`` (D,) with D ``defect_kinds``."""
    good = _finite(good_scores, "good_scores")
    bad = _finite(defect_scores, "defect_scores")
    names = np.asarray(list(defect_kinds), dtype=object)
    if len(names) != bad.size:
        raise ValueError(f"{bad.size} defect scores but {len(names)} kinds")
    at = np.unique(np.r_[good, bad, np.inf]).astype(np.float64)
    kinds = sorted({str(k) for k in names})
    # rejects and misses at every threshold at once: counts below t in sorted scores
    below_good = np.searchsorted(np.sort(good), at, side="left")
    fr = (good.size - below_good) / good.size if good.size else np.zeros(at.size)
    miss = {}
    for k in kinds:
        scores = np.sort(bad[names.astype(str) == k])
        miss[k] = np.searchsorted(scores, at, side="left") / scores.size
    return tuple(
        CurvePoint(float(t), float(fr[i]), {k: float(miss[k][i]) for k in kinds})
        for i, t in enumerate(at)
    )


def good_map_threshold(good_map_peaks: np.ndarray, budget: float) -> float:
    """Raw pixel threshold from good images alone: above the conformal-rank per-image map
    peak, so at most ``budget`` of good parts show any pixel over it. (G,) peaks of raw maps."""
    peaks = _finite(good_map_peaks, "good_map_peaks")
    if peaks.size == 0:
        raise ValueError("a pixel threshold from good maps needs at least one good map")
    return _budget_threshold(peaks, budget)[0]


# ------------------------------------------------------------ score transfer
@dataclass(frozen=True)
class ScoreTransfer:
    """``target = slope * source + intercept``, fitted by least squares on ``n_pairs`` images
    scored in both spaces; ``max_residual``: the largest |error| on them (target units);
    ``residuals``: each pair's target minus the line's prediction."""

    slope: float
    intercept: float
    n_pairs: int
    max_residual: float
    residuals: tuple[float, ...] = ()

    def apply(self, scores: np.ndarray) -> np.ndarray:
        return self.slope * np.asarray(scores, dtype=np.float64) + self.intercept

    def residual_share(self, threshold: float, good_scores: np.ndarray) -> float:
        """``max_residual`` over ``threshold``'s margin above the median good score (inf: none)."""
        margin = threshold - float(np.median(good_scores))
        return self.max_residual / margin if margin > 0 else math.inf


def fit_transfer(source: np.ndarray, target: np.ndarray) -> ScoreTransfer:
    """Carry scores of one model (the torch model's out-of-fold scores) into another's space
    (an exported bundle's): a line fitted on (P,) paired raw scores of the same images. Fewer
    than 2 distinct source scores: a shift by the median difference."""
    x = _finite(source, "source")
    y = _finite(target, "target")
    if x.size != y.size or x.size == 0:
        raise ValueError(f"need as many source as target scores (> 0), got {x.size}, {y.size}")
    if np.unique(x).size < 2:
        slope, intercept = 1.0, float(np.median(y - x))
    else:
        slope, intercept = (float(v) for v in np.polyfit(x, y, 1))
    residuals = y - (slope * x + intercept)
    return ScoreTransfer(
        slope, intercept, int(x.size), float(np.abs(residuals).max()), tuple(residuals.tolist())
    )


def convolved(carried: np.ndarray, residuals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(G * R,) scores and weights for (G,) ``carried`` scores each truly off by one of (R,)
    signed ``residuals``, equally likely: every sum weighs 1 / R, so ``choose_threshold(...,
    good_weights=)`` still counts G good images (the residuals' distribution a plug-in)."""
    carried = _finite(carried, "carried")
    residual = _finite(residuals, "residuals")
    if residual.size == 0:
        raise ValueError("convolved needs at least one residual")
    sums = (carried[:, None] + residual[None, :]).reshape(-1)
    return sums, np.full(sums.size, 1.0 / residual.size)
