from __future__ import annotations

import numpy as np
import pytest

from inspection.core.bootstrap import auroc_interval


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
