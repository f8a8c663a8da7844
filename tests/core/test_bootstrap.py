from __future__ import annotations

import numpy as np
import pytest

from inspection.core.bootstrap import (
    auroc_gain_interval,
    auroc_interval,
    count_interval,
    rate_interval,
)


def test_interval_brackets_the_estimate_and_narrows_with_data() -> None:
    rng = np.random.default_rng(0)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.r_[np.zeros(n), np.ones(n)]
        return rng.normal(labels * 1.0, 1.0), labels

    small = auroc_interval(*sample(15), resamples=300)
    large = auroc_interval(*sample(400), resamples=300)
    assert small.low <= small.value <= small.high
    assert large.high - large.low < small.high - small.low
    assert 0.7 < large.value < 0.82  # AUROC of a unit shift is Phi(1/sqrt 2) ~ 0.76


def test_perfect_separation_gives_a_degenerate_interval() -> None:
    interval = auroc_interval(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1]), resamples=50)
    assert (interval.value, interval.low, interval.high) == (1.0, 1.0, 1.0)


def test_single_class_is_refused() -> None:
    with pytest.raises(ValueError, match="good and defective"):
        auroc_interval(np.array([0.1, 0.2]), np.array([1, 1]))


def test_paired_gain_cancels_the_shared_split_and_sees_a_real_gain() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(20), np.ones(40)]
    reference = rng.normal(labels * 0.8, 1.0)
    same = auroc_gain_interval(reference, reference, labels, resamples=300)
    assert (same.value, same.low, same.high) == (0.0, 0.0, 0.0)
    # a small noisy change: the gain's interval straddles 0, narrower than AUROC's own spread
    nudged = reference + rng.normal(0.0, 0.2, labels.size)
    small = auroc_gain_interval(nudged, reference, labels, resamples=300)
    alone = auroc_interval(reference, labels, resamples=300)
    assert small.low < 0.0 < small.high and small.high - small.low < alone.high - alone.low
    better = reference + labels * 1.5
    gain = auroc_gain_interval(better, reference, labels, resamples=300)
    expected = roc_auc_score(labels, better) - roc_auc_score(labels, reference)
    assert gain.value == pytest.approx(expected) and gain.low > 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        auroc_gain_interval(better[:-1], reference, labels)


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    # Clopper-Pearson 95 %: the parametric bootstrap gave [0, 0.30] for 1 of 10
    [
        (1, 10, 0.00253, 0.44502),
        (0, 5, 0.0, 0.52182),
        (5, 5, 0.47818, 1.0),
        (20, 1000, 0.01226, 0.03072),
    ],
)
def test_rate_interval_is_the_exact_one(k: int, n: int, low: float, high: float) -> None:
    interval = rate_interval(np.r_[np.ones(k, bool), np.zeros(n - k, bool)])
    assert (interval.value, interval.resamples) == (k / n, 0)
    assert (interval.low, interval.high) == (
        pytest.approx(low, abs=5e-5),
        pytest.approx(high, abs=5e-5),
    )


def test_rate_interval_narrows_with_data_and_refuses_nothing_or_nonsense() -> None:
    assert count_interval(200, 1000).high - count_interval(200, 1000).low < 0.06
    assert count_interval(2, 10).high - count_interval(2, 10).low > 0.4
    assert count_interval(3, 10**7).high < 1e-6  # any n
    with pytest.raises(ValueError, match="at least one"):
        rate_interval(np.zeros(0, bool))
    with pytest.raises(ValueError, match="0 <= k <= n"):
        count_interval(11, 10)


def test_a_count_s_exact_interval_is_searched_once() -> None:
    """A verdict asks ``defects_needed`` on every page render: its walk over n asks the same
    exact intervals again, answered from the first search (the same interval object)."""
    from inspection.core.operating_point import defects_needed

    first = defects_needed(0.1, 0.95, 4)
    before = count_interval.cache_info()
    assert defects_needed(0.1, 0.95, 4) == first == 100
    after = count_interval.cache_info()
    assert after.misses == before.misses and after.hits > before.hits
    assert count_interval(4, 100) is count_interval(4, 100)


def test_gain_interval_is_the_per_resample_loop_with_ties() -> None:
    """The resamples' AUROCs in blocks: the same draws and figures as one resample at a time."""

    def _mann_whitney(scores: np.ndarray, good: np.ndarray, bad: np.ndarray) -> float:
        g, b = scores[good], scores[bad]
        greater, equal = (b[:, None] > g[None]).sum(), (b[:, None] == g[None]).sum()
        return float((greater + 0.5 * equal) / (g.size * b.size))

    rng = np.random.default_rng(4)
    labels = rng.random(70) < 0.4
    scores = np.round(rng.normal(labels * 0.6, 1.0) * 4) / 4  # coarse: many ties
    reference = np.round(rng.normal(labels * 0.3, 1.0) * 4) / 4
    draws = np.random.default_rng(9)
    good, bad = np.flatnonzero(~labels), np.flatnonzero(labels)
    gains = []
    for _ in range(300):
        g, b = draws.choice(good, good.size), draws.choice(bad, bad.size)
        gains.append(_mann_whitney(scores, g, b) - _mann_whitney(reference, g, b))
    tail = (1.0 - 0.95) / 2.0  # as the function computes it (not exactly 0.025)
    low, high = np.quantile(gains, [tail, 1.0 - tail])
    interval = auroc_gain_interval(scores, reference, labels, resamples=300, seed=9)
    assert (interval.low, interval.high) == (low, high)
