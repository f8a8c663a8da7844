"""``core.operating_point.f1_adaptive_threshold`` against scikit-learn's precision-recall curve."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import precision_recall_curve

from inspection.core.operating_point import f1_adaptive_threshold


def _sklearn(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    best = int(np.argmax(f1[:-1]))
    return float(thresholds[best]), float(f1[best])


@pytest.mark.parametrize("seed", range(40))
def test_the_threshold_and_f1_are_scikit_learns(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 400))
    scores = rng.random(n)
    if seed % 2:  # many ties
        scores = np.round(scores * rng.integers(2, 8))
    labels = rng.random(n) < rng.uniform(0.05, 0.95)
    labels[:2] = [True, False]  # both classes
    assert f1_adaptive_threshold(scores, labels) == _sklearn(scores, labels.astype(int))


def test_one_class_keeps_its_rule() -> None:
    scores = np.array([0.2, 0.5, 0.9])
    assert f1_adaptive_threshold(scores, np.zeros(3, bool)) == (0.9, 0.0)
    assert f1_adaptive_threshold(scores, np.ones(3, bool)) == (0.2, 1.0)


@pytest.mark.parametrize("seed", range(10))
def test_only_the_positive_float32_pixels_are_tried_with_the_float64_figures(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A map's float32 pixels are thresholded without widening them to float64, and only the
    defect pixels' values are tried as thresholds (F1 peaks at one of them); the threshold and
    F1 are those of every value tried on the widened pixels (scikit-learn's)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 4000))
    scores = rng.random(n).astype(np.float32)
    if seed % 2:  # many ties, between classes too
        scores = np.round(scores * 50).astype(np.float32) / np.float32(50)
    labels = rng.random(n) < rng.uniform(0.05, 0.95)
    labels[:2] = [True, False]
    widened = f1_adaptive_threshold(scores.astype(np.float64), labels)
    assert widened == _sklearn(scores, labels.astype(int))
    tried = []
    unique = np.unique
    monkeypatch.setattr(
        np, "unique", lambda a, **k: tried.append((a.dtype, a.size)) or unique(a, **k)
    )
    assert f1_adaptive_threshold(scores, labels) == widened
    assert tried == [(np.float32, int(labels.sum()))]
