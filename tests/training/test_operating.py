"""Which good scores certify a threshold: the never-trained ones alone once they suffice for
the budget, out-of-fold training scores only while they are too few (and said so); the
calibration carries exactly the scores its threshold was set on."""

from __future__ import annotations

import numpy as np
import pytest

from inspection.core.calibration import Calibration
from inspection.core.operating_point import (
    OUT_OF_FOLD,
    OperatingPoint,
    choose_threshold,
    n_needed,
)
from inspection.training.global_context import context_threshold
from inspection.training.operating import TrainGoodScores, calibrate_predictions
from inspection.training.samples import Predictions

RNG = np.random.default_rng(0)
VALIDATION = Predictions(
    scores=np.r_[RNG.normal(0.0, 1.0, 20), RNG.normal(6.0, 1.0, 10)].astype(np.float32),
    maps=np.zeros((30, 4, 4), np.float32),
    labels=np.r_[np.zeros(20), np.ones(10)].astype(np.int64),
    masks=np.zeros((30, 4, 4), bool),
    mask_known=np.zeros(30, bool),
    defect_types=("good",) * 20 + ("crack",) * 10,
    paths=tuple(f"{i}.png" for i in range(30)),
)
OUT_OF_FOLD_SCORES = RNG.normal(-1.0, 0.5, 60)
"""Lower than new parts', as a model scores its own training images even out of fold."""


def assert_carries_its_certificate(calibration: Calibration, scores: np.ndarray) -> None:
    """``calibration.good_scores`` are ``scores`` (as stored, 9 digits), as many as the
    certificate's n and its sources, and the threshold is derived from them again."""
    operating = calibration.operating
    carried, weights = calibration.good_set()
    assert np.sort(carried) == pytest.approx(np.sort(scores), rel=1e-8)
    assert operating.n_good == round(weights.sum()) == sum(operating.good_sources.values())
    again = choose_threshold(carried, OperatingPoint(budget=operating.budget), good_weights=weights)
    assert (again.threshold, again.rank) == pytest.approx((operating.threshold, operating.rank))


def _good(scores: np.ndarray) -> TrainGoodScores:
    return TrainGoodScores((), scores, (), np.empty(0), 5, np.ones(scores.size, bool))


@pytest.mark.parametrize("budget", [0.01, 0.02])  # n_needed 99, 49: above the 20 validation
def test_enough_never_trained_scores_set_the_threshold_without_out_of_fold_ones(
    budget: float,
) -> None:
    point = OperatingPoint(budget=budget)
    held = RNG.normal(0.0, 1.0, n_needed(budget) - 20)  # + 20 good validation
    calibration = calibrate_predictions(VALIDATION, point, _good(OUT_OF_FOLD_SCORES), held)
    operating = calibration.operating
    alone = choose_threshold(np.r_[held, VALIDATION.scores[:20]], point)
    assert operating.threshold == pytest.approx(alone.threshold)
    assert operating.good_sources == {"validation": 20, "calibration": held.size}
    assert operating.exchangeable and "not exchangeable" not in operating.describe()
    assert_carries_its_certificate(calibration, np.r_[held, VALIDATION.scores[:20]])

    fewer = calibrate_predictions(VALIDATION, point, _good(OUT_OF_FOLD_SCORES), held[1:])
    assert fewer.operating.good_sources[OUT_OF_FOLD] == OUT_OF_FOLD_SCORES.size
    assert_carries_its_certificate(
        fewer, np.r_[OUT_OF_FOLD_SCORES, held[1:], VALIDATION.scores[:20]]
    )
    assert not fewer.operating.exchangeable
    assert "not exchangeable with new parts" in fewer.operating.describe()


def test_a_fused_threshold_follows_the_same_rule() -> None:
    point = OperatingPoint()
    fused, labels = VALIDATION.scores.astype(np.float64), VALIDATION.labels
    held = RNG.normal(0.0, 1.0, n_needed(point.budget) - 20)
    choice = context_threshold(fused, labels, point, OUT_OF_FOLD_SCORES, held)
    assert choice.good_sources == {"validation": 20, "calibration": held.size}
    pooled = context_threshold(fused, labels, point, OUT_OF_FOLD_SCORES, held[1:])
    assert pooled.good_sources[OUT_OF_FOLD] == OUT_OF_FOLD_SCORES.size
