"""Chart specs send the browser fewer rows than scores, and still draw what the scores say."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pandas as pd

from inspection.dashboard import charts, thresholds


def _scores(seed: int = 0, n: int = 3000) -> thresholds.LabelledScores:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.1).astype(np.int8)
    scores = np.clip(rng.normal(0.3 + 0.4 * labels, 0.12), 0, 1).round(3)  # ties, like real ones
    kinds = tuple(rng.choice(["crack", "hole"]) if x else "good" for x in labels)
    return thresholds.LabelledScores(scores, labels, "test", kinds)


def _drawn(frame: pd.DataFrame, x: str, y: str) -> list[tuple[float, float]]:
    """The vertices of the step-after path through ``frame``'s points, straight runs merged."""
    path: list[tuple[float, float]] = []
    points = list(zip(frame[x], frame[y], strict=True))
    for (x0, y0), (x1, y1) in pairwise(points):
        path += [(x0, y0), (x1, y0), (x1, y1)]
    merged: list[tuple[float, float]] = []
    for point in path:
        if merged and point == merged[-1]:
            continue
        if len(merged) >= 2 and any(merged[-2][i] == merged[-1][i] == point[i] for i in (0, 1)):
            merged[-1] = point  # the previous vertex lay inside a straight run
        else:
            merged.append(point)
    return merged


def test_curves_keep_their_corners_only() -> None:
    data = _scores()
    curve = thresholds.curve_frame(data)
    spec = charts.operating_curve_chart(curve, curve.head(0))
    sent = spec["datasets"]["curve"]
    assert len(sent) < len(curve) / 10
    for kind in ("crack", "hole"):
        full, kept = curve[curve["kind"] == kind], sent[sent["kind"] == kind]
        assert _drawn(kept, "false_reject_rate", "miss_rate") == _drawn(
            full, "false_reject_rate", "miss_rate"
        )
    pr = thresholds.pr_curve(data)
    frame = pd.DataFrame({"recall": pr["recall"], "precision": pr["precision"]})
    kept = charts.pr_chart(pr, thresholds.tradeoff(data, 0.5))["datasets"]["curve"]
    assert len(kept) < len(frame)
    assert _drawn(kept, "recall", "precision") == _drawn(frame, "recall", "precision")


def test_the_score_histogram_is_binned_before_it_is_sent() -> None:
    data = _scores(1)
    frame = charts.score_histogram_chart(data, 0.5)["datasets"]["scores"]
    assert len(frame) <= 2 * charts.HISTOGRAM_BINS
    for name, label in (("good", 0), ("defective", 1)):
        mine = frame[frame["class"] == name]
        expected, edges = np.histogram(
            data.scores[data.labels == label], charts.HISTOGRAM_BINS, (0, 1)
        )
        assert mine["parts"].sum() == (data.labels == label).sum()
        assert dict(zip(mine["start"], mine["parts"], strict=True)) == {
            edges[i]: n for i, n in enumerate(expected) if n
        }
