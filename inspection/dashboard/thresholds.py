"""Threshold trade-offs: labelled scores, ROC/PR curves, error rates and suggestions.

Labelled scores (1 defective, 0 good) come from the bundle's held-out split, the station's
random audit sample (unbiased), or every reviewed row: BIASED, as reviewers see NG and
borderline parts, so it never feeds a budget suggestion. Suggestions only quote the core's
rule (``core.operating_point.choose_threshold``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from inspection.core.bootstrap import Interval, count_interval
from inspection.core.bundle import read_bundle_metadata
from inspection.core.decisions import ThresholdVersion
from inspection.core.errors import BundleError, RegistryError
from inspection.core.metrics import image_auroc
from inspection.core.operating_point import (
    BUDGET_CONFIDENCE,
    OperatingPoint,
    ThresholdChoice,
    choose_threshold,
    operating_curve,
)
from inspection.core.registry import Registry
from inspection.core.threshold import is_ng
from inspection.core.validation_scores import ValidationScores
from inspection.core.validation_scores import read_validation_scores as read_scores_file
from inspection.store import queries
from inspection.store.store import Store

DEFECT_LABELS = ("defect",)
GOOD_LABELS = queries.GOOD_LABELS


@dataclass(frozen=True)
class LabelledScores:
    """Scores with labels (1 = defective), where they came from and each one's kind if known."""

    scores: np.ndarray
    labels: np.ndarray
    source: str
    kinds: tuple[str, ...] = ()
    biased: bool = False
    """Selected by score (reviews of NG/borderline parts): rates on it are not production's."""
    held_out: bool = False
    """Holds the bundle's held-out split, which model health and LINE-READY judge on: a
    threshold chosen on it would be judged on its own sample (``suggest_for_budget``)."""

    @property
    def n_defect(self) -> int:
        return int(self.labels.sum())

    @property
    def n_good(self) -> int:
        return int(len(self.labels) - self.labels.sum())

    @property
    def has_both_classes(self) -> bool:
        return self.n_defect > 0 and self.n_good > 0

    def __len__(self) -> int:
        return len(self.scores)


@dataclass(frozen=True)
class Tradeoff:
    """Error rates at one threshold; a rate is ``nan`` when its class has no samples."""

    threshold: float
    false_alarm_rate: float  # good parts flagged NG / good parts
    miss_rate: float  # defective parts passed OK / defective parts
    precision: float
    recall: float
    f1: float


def empty_scores(source: str) -> LabelledScores:
    return LabelledScores(np.zeros(0), np.zeros(0, dtype=np.int8), source)


def combine(parts: list[LabelledScores], source: str) -> LabelledScores:
    if not parts:
        return empty_scores(source)
    kinds: tuple[str, ...] = ()
    for part in parts:
        kinds += part.kinds or tuple("good" if x == 0 else "defect" for x in part.labels)
    return LabelledScores(
        np.concatenate([p.scores for p in parts]),
        np.concatenate([p.labels for p in parts]).astype(np.int8),
        source,
        kinds,
        any(p.biased for p in parts),
        any(p.held_out for p in parts),
    )


def read_validation_scores(bundle_dir: str | Path) -> LabelledScores | None:
    """The bundle's labelled validation scores, or ``None`` when it ships none."""
    data = read_scores_file(bundle_dir)
    if data is None:
        return None
    note = f"; {data.note}" if data.note else ""
    return LabelledScores(
        np.asarray(data.scores, dtype=np.float64),
        np.asarray(data.labels, dtype=np.int8),
        f"held-out ({data.split} split{note})",
        kinds_of(data),
        held_out=True,
    )


def kinds_of(data: ValidationScores) -> tuple[str, ...]:
    """Each image's kind: its recorded defect type, 'good' for good parts, else 'defect'."""
    types = data.defect_types or ("defect",) * len(data.labels)
    return tuple(
        "good" if label == 0 else str(k) for k, label in zip(types, data.labels, strict=True)
    )


def default_bundle(registry: Registry, product: str) -> str | None:
    """The live bundle, else the newest exported one, else ``None``."""
    live = registry.journal.live(product)
    if live is not None:
        return live.bundle_id
    bundles = registry.bundles.bundle_ids(product)
    return bundles[-1] if bundles else None


def validation_scores(
    registry: Registry, product: str, bundle_id: str | None
) -> LabelledScores | None:
    """Validation scores of ``bundle_id`` (None when there is no bundle or it ships none)."""
    if bundle_id is None:
        return None
    try:
        return read_validation_scores(registry.bundles.bundle_dir(product, bundle_id))
    except RegistryError:
        return None


def bundle_scale(registry: Registry, product: str, bundle_id: str | None) -> str | None:
    """The fingerprint of ``bundle_id``'s signed normalisation (None: no readable bundle)."""
    if bundle_id is None:
        return None
    try:
        metadata = read_bundle_metadata(registry.bundles.bundle_dir(product, bundle_id))
    except (BundleError, RegistryError):
        return None
    return metadata.normalization.fingerprint


def reviewed_scores(store: Store, product: str) -> LabelledScores:
    """Scores of reviewed inspections (biased)."""
    return _labelled(queries.labelled_scores(store, product), "reviewed results", biased=True)


def audit_scores(
    store: Store, product: str, bundle_id: str | None = None, scale: str | None = None
) -> LabelledScores:
    """Reviewed parts of the random audit sample (``bundle_id`` and ``scale``: only those
    that bundle scored under that normalisation, one scale)."""
    pairs = queries.labelled_scores(
        store, product, audit_only=True, bundle_id=bundle_id, scale=scale
    )
    return _labelled(pairs, f"random audit sample ({len(pairs)} reviewed parts)", biased=False)


def _labelled(pairs: list[tuple[float, str]], source: str, *, biased: bool) -> LabelledScores:
    kept = [
        (score, 1 if label in DEFECT_LABELS else 0)
        for score, label in pairs
        if label in DEFECT_LABELS or label in GOOD_LABELS
    ]
    if not kept:
        return replace(empty_scores(source), biased=biased)
    scores, labels = zip(*kept, strict=True)
    kinds = tuple("defect (reviewed)" if x else "good" for x in labels)
    return LabelledScores(
        np.asarray(scores), np.asarray(labels, dtype=np.int8), source, kinds, biased
    )


def reject_interval(data: LabelledScores, threshold: float, level: float = 0.95) -> Interval:
    """The good-part reject rate at ``threshold`` with its exact (Clopper-Pearson) interval:
    a confidence interval only for a threshold NOT chosen on ``data`` (for a chosen one quote
    ``ThresholdChoice.false_reject_bound``, its confidence bound)."""
    good = data.scores[data.labels == 0]
    return count_interval(int(is_ng(good, threshold).sum()), good.size, level=level)


def tradeoff(data: LabelledScores, threshold: float) -> Tradeoff:
    flagged = is_ng(data.scores, threshold)
    defect = data.labels == 1
    tp = int(np.sum(flagged & defect))
    fp = int(np.sum(flagged & ~defect))
    fn = int(np.sum(~flagged & defect))
    n_good, n_defect, nan = data.n_good, data.n_defect, float("nan")
    false_alarm = fp / n_good if n_good else nan
    miss = fn / n_defect if n_defect else nan
    precision = tp / (tp + fp) if tp + fp else nan
    recall = tp / n_defect if n_defect else nan
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else nan
    return Tradeoff(float(threshold), false_alarm, miss, precision, recall, f1)


def roc_curve(data: LabelledScores) -> dict[str, np.ndarray | float]:
    """ROC: ``fpr``, ``tpr``, ``thresholds`` and ``auc``; needs both classes."""
    # deferred: scikit-learn, only when a curve is drawn
    from sklearn.metrics import roc_curve as sk_roc_curve

    _need_both(data)
    fpr, tpr, thresholds = sk_roc_curve(data.labels, data.scores)
    auc = image_auroc(data.scores, data.labels)
    return {"fpr": fpr, "tpr": tpr, "thresholds": thresholds, "auc": auc}


def pr_curve(data: LabelledScores) -> dict[str, np.ndarray | float]:
    """Precision-recall: ``precision``, ``recall``, ``thresholds`` and ``ap``."""
    # deferred: scikit-learn, only when a curve is drawn
    from sklearn.metrics import average_precision_score, precision_recall_curve

    _need_both(data)
    precision, recall, thresholds = precision_recall_curve(data.labels, data.scores)
    ap = float(average_precision_score(data.labels, data.scores))
    return {"precision": precision, "recall": recall, "thresholds": thresholds, "ap": ap}


SAVED_DECIMALS = 4
"""A saved threshold keeps this many decimals (``save_threshold``); suggestions quote their
rates at exactly the value they would save."""


def applied_value(data: LabelledScores, threshold: float) -> float:
    """The 4-decimal value a save of ``threshold`` stores, judging every labelled score as
    ``threshold`` does when the scores leave room, inside the registry's (0, 1)."""
    step = 10.0**-SAVED_DECIMALS
    wanted = is_ng(data.scores, threshold)
    options = [round(threshold, SAVED_DECIMALS)]
    options += [np.floor(threshold / step) * step, np.ceil(threshold / step) * step]
    options = [round(min(max(float(v), step), 1.0 - step), SAVED_DECIMALS) for v in options]
    for value in options:
        if np.array_equal(is_ng(data.scores, value), wanted):
            return value
    return options[0]


def suggest_max_f1(data: LabelledScores) -> Tradeoff:
    """The core's F1 threshold, quoted at the saved value."""
    return _quoted(data, OperatingPoint(policy="f1"))


def suggest_for_miss_rate(data: LabelledScores, target: float) -> Tradeoff:
    """The core's highest threshold missing at most ``target`` of the defects, quoted."""
    if not 0.0 <= target < 1.0:
        raise ValueError(f"target miss rate must be in [0, 1), got {target}")
    return _quoted(data, OperatingPoint(policy="max_miss", max_miss=target))


def _quoted(data: LabelledScores, point: OperatingPoint) -> Tradeoff:
    _need_both(data)
    good, bad = data.scores[data.labels == 0], data.scores[data.labels == 1]
    choice = choose_threshold(good, point, defect_scores=bad)
    return tradeoff(data, applied_value(data, choice.threshold))


@dataclass(frozen=True)
class BudgetPick:
    """What the budget control put on the slider (as saved) and the budget it was chosen for."""

    value: float
    budget: float

    @classmethod
    def of(cls, suggestion: Tradeoff, choice: ThresholdChoice) -> BudgetPick:
        return cls(suggestion.threshold, choice.budget)


def suggest_for_budget(data: LabelledScores, budget: float) -> tuple[Tradeoff, ThresholdChoice]:
    """The core's threshold keeping ``budget`` with ``BUDGET_CONFIDENCE`` on the good
    scores: the trade-off at the saved value and the choice. ``data`` must be unbiased."""
    if data.biased:
        raise ValueError(
            f"{data.source}: reviewed parts were selected by score (NG/borderline), so their "
            "good parts are not production's; a budget needs the random audit sample"
        )
    if data.held_out:
        raise ValueError(
            f"{data.source}: holds the held-out split that model health and LINE-READY judge "
            "on; a threshold chosen on it is not held-out. Choose a budget on the random "
            "audit sample alone"
        )
    good = data.scores[data.labels == 0]
    if good.size == 0:
        raise ValueError(f"{data.source}: a false-reject budget needs labelled good parts")
    point = OperatingPoint(policy="false_reject_budget", budget=budget)
    choice = choose_threshold(
        good, point, defect_scores=data.scores[data.labels == 1], confidence=BUDGET_CONFIDENCE
    )
    return tradeoff(data, applied_value(data, choice.threshold)), choice


def curve_frame(data: LabelledScores) -> pd.DataFrame:
    """The operating curve in long form: threshold, false_reject_rate, kind, miss_rate."""
    good = data.labels == 0
    kinds = data.kinds or tuple("good" if x == 0 else "defect" for x in data.labels)
    defect_kinds = [k for k, bad in zip(kinds, ~good, strict=True) if bad]
    points = operating_curve(data.scores[good], data.scores[~good], defect_kinds)
    rows = [
        (min(p.threshold, 1.0), p.false_reject_rate, kind, rate)
        for p in points
        for kind, rate in p.miss_rate.items()
    ]
    return pd.DataFrame(rows, columns=["threshold", "false_reject_rate", "kind", "miss_rate"])


def _need_both(data: LabelledScores) -> None:
    if not data.has_both_classes:
        raise ValueError(
            f"{data.source}: needs good and defective samples, got "
            f"{data.n_good} good and {data.n_defect} defective"
        )


def expected_ng(
    histogram: np.ndarray, threshold: float, daily_volume: float
) -> tuple[float, float]:
    """(NG fraction, expected NG parts per day) at ``threshold`` from a score histogram over
    [0, 1]; bins whose lower edge is >= threshold count as NG."""
    total = int(histogram.sum())
    if total == 0:
        return 0.0, 0.0
    bins = len(histogram)
    first = int(np.ceil(round(threshold * bins, 6)))
    fraction = float(histogram[first:].sum()) / total
    return fraction, fraction * daily_volume


def save_threshold(
    registry: Registry,
    product: str,
    value: float,
    *,
    actor: str,
    reason: str,
    bundle_id: str | None = None,
    picked: BudgetPick | None = None,
) -> ThresholdVersion:
    """Create a new threshold version the stations pick up; it records the budget of
    ``picked`` when ``value`` is what the budget control chose."""
    saved = round(float(value), SAVED_DECIMALS)
    at_pick = picked is not None and saved == round(picked.value, SAVED_DECIMALS)
    return registry.journal.set_threshold(
        product,
        saved,
        actor=actor.strip(),
        reason=reason.strip(),
        bundle_id=bundle_id,
        budget=picked.budget if at_pick else None,
    )


def current_threshold_value(registry: Registry, product: str, bundle_id: str | None) -> float:
    """The product's current threshold version, else the bundle's own, else 0.5."""
    current = registry.journal.current_threshold(product)
    if current is not None:
        return current.value
    if bundle_id is not None:
        try:
            return float(
                read_bundle_metadata(
                    registry.bundles.bundle_dir(product, bundle_id)
                ).image_threshold
            )
        except (BundleError, RegistryError):
            pass
    return 0.5
