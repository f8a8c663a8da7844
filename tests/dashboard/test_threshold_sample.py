"""Threshold suggestions on a store whose reviews are biased (only NG/borderline parts are
reviewed): the budget rests on the random audit sample, is kept with 95 % confidence, and its
stated reject interval holds on held-out good parts the suggestion never saw."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import insert

from inspection.dashboard import thresholds
from inspection.store.models import Inspection
from inspection.store.store import Store

N, DEFECT_RATE, AUDIT_RATE, REVIEWED_ABOVE = 30_000, 0.03, 0.1, 0.4
T0 = datetime(2025, 3, 1, tzinfo=timezone.utc)


def _label(defective: bool, score: float) -> str:
    return "defect" if defective else ("false_alarm" if score >= 0.5 else "good")


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, np.ndarray]:
    """A store of N parts; reviewers labelled every part scoring >= 0.4 (NG and borderline)
    and the random audit sample. Returns it with the held-out good scores (good parts outside
    the audit sample, whatever their review)."""
    rng = np.random.default_rng(41)
    defective = rng.random(N) < DEFECT_RATE
    scores = np.where(defective, rng.beta(7.0, 2.6, N), rng.beta(2.2, 7.0, N))
    audit = rng.random(N) < AUDIT_RATE
    rows = [
        {
            "id": uuid.uuid4().hex,
            "created_at": T0 + timedelta(seconds=i),
            "product": "p",
            "station_id": "s1",
            "score": float(scores[i]),
            "threshold": 0.5,
            "verdict": "NG" if scores[i] >= 0.5 else "OK",
            "model_version": "p/v0001",
            "bundle_id": "v0001-fp32",
            "latency_ms": 10.0,
            "width": 8,
            "height": 8,
            "image_sha": "0" * 64,
            "audit_sample": bool(audit[i]),
            "review_label": _label(defective[i], scores[i])
            if audit[i] or scores[i] >= REVIEWED_ABOVE
            else None,
        }
        for i in range(N)
    ]
    root = tmp_path_factory.mktemp("biased")
    store = Store.migrated(f"sqlite:///{root / 'db.sqlite'}", root / "blobs")
    with store.session() as session:
        session.execute(insert(Inspection), rows)
    return store, scores[~defective & ~audit]


def test_the_budget_holds_on_held_out_good_parts(production) -> None:
    store, held_out = production
    sample = thresholds.audit_scores(store, "p")
    assert sample.n_good > 2500 and not sample.biased
    suggestion, choice = thresholds.suggest_for_budget(sample, 0.02)
    stated = thresholds.reject_interval(sample, suggestion.threshold)
    measured = float(np.mean(held_out >= suggestion.threshold))
    assert stated.low <= measured <= stated.high, (stated, measured)
    assert stated.high - stated.low < 0.015 and choice.sufficient
    # kept with 95 % confidence: the sample's exact one-sided bound, and production, within it
    assert choice.false_reject_bound <= 0.02 and measured <= 0.02, (choice, measured)

    reviewed = thresholds.reviewed_scores(store, "p")  # what the page used to default to
    assert thresholds.tradeoff(reviewed, suggestion.threshold).false_alarm_rate > 2 * stated.high


def test_a_budget_refuses_biased_reviews(production) -> None:
    store, _ = production
    reviewed = thresholds.reviewed_scores(store, "p")
    mixed = thresholds.combine([thresholds.audit_scores(store, "p"), reviewed], "both")
    for data in (reviewed, mixed):
        with pytest.raises(ValueError, match="selected by score"):
            thresholds.suggest_for_budget(data, 0.01)


def test_suggestions_follow_the_core_rule(tmp_path: Path) -> None:
    from inspection.core.operating_point import OperatingPoint, choose_threshold

    rng = np.random.default_rng(3)
    data = thresholds.LabelledScores(
        np.r_[rng.beta(2, 7, 300), rng.beta(7, 2, 60)],
        np.r_[np.zeros(300), np.ones(60)].astype(np.int8),
        "synthetic",
    )
    good, bad = data.scores[:300], data.scores[300:]
    for suggestion, point in (
        (thresholds.suggest_max_f1(data), OperatingPoint(policy="f1")),
        (
            thresholds.suggest_for_miss_rate(data, 0.05),
            OperatingPoint(policy="max_miss", max_miss=0.05),
        ),
    ):
        core = choose_threshold(good, point, defect_scores=bad).threshold
        assert suggestion.threshold == thresholds.applied_value(data, core)


def test_a_budget_is_not_chosen_on_the_split_model_health_judges() -> None:
    split = thresholds.LabelledScores(
        np.linspace(0, 1, 300), np.zeros(300, np.int8), "held-out (test split)", held_out=True
    )
    for data in (split, thresholds.combine([split], "held-out + audit sample")):
        with pytest.raises(ValueError, match="a threshold chosen on it is not held-out"):
            thresholds.suggest_for_budget(data, 0.01)
