"""Confidence intervals (torch-free): bootstrap for image AUROC (small test splits are noisy),
exact (Clopper-Pearson, ``scipy.stats.binomtest``) for rates such as a kind's miss rate."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A point estimate with an interval at ``level`` (e.g. 0.95): percentile bootstrap over
    ``resamples`` resamples, or exact (Clopper-Pearson) when ``resamples`` is 0."""

    value: float
    low: float
    high: float
    level: float
    resamples: int

    def to_dict(self) -> dict[str, float | int]:
        return {
            "value": round(self.value, 4),
            "low": round(self.low, 4),
            "high": round(self.high, 4),
            "level": self.level,
            "resamples": self.resamples,
        }

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def auroc_interval(
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Image AUROC of (N,) scores vs (N,) 0/1 labels with a stratified percentile bootstrap:
    good and defective images are resampled apart (with replacement, each class keeping its
    size), so every resample has both classes."""
    return _bootstrap((scores,), labels, resamples, level, seed)


def rate_interval(hits: np.ndarray, *, level: float = 0.95) -> Interval:
    """The share of True in (N,) bool ``hits`` with its exact (Clopper-Pearson) interval."""
    hits = np.asarray(hits, dtype=bool).reshape(-1)
    return count_interval(int(hits.sum()), hits.size, level=level)


@lru_cache(maxsize=4096)
def count_interval(k: int, n: int, *, level: float = 0.95) -> Interval:
    """``k`` of ``n`` as a rate with its exact (Clopper-Pearson) interval at ``level``: it
    covers the true rate with probability >= ``level`` for every n and rate (1 of 10:
    [0.003, 0.445] at 95 %; 0 of 5: [0, 0.522]). Kept per (k, n, level): scipy's root search
    takes ~2 ms, and a readiness verdict asks the same counts again on every page render
    (``operating_point.defects_needed`` walks n one by one)."""
    if n < 1:
        raise ValueError("a rate needs at least one observation")
    if not 0 <= k <= n or not 0.0 < level < 1.0:
        raise ValueError(f"need 0 <= k <= n and 0 < level < 1, got k={k}, n={n}, level={level}")
    from scipy.stats import binomtest  # deferred: scipy.stats costs ~1 s at every CLI start

    ci = binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    return Interval(k / n, float(ci.low), float(ci.high), level, resamples=0)


def auroc_gain_interval(
    scores: np.ndarray,
    reference: np.ndarray,
    labels: np.ndarray,
    *,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Image AUROC of ``scores`` minus that of ``reference`` on the same (N,) images, with a
    paired stratified percentile bootstrap: each resample draws the same good and defective
    images for both, so what the two share (the split's luck) cancels out of the gain."""
    return _bootstrap((scores, reference), labels, resamples, level, seed)


def _bootstrap(
    parts: tuple[np.ndarray, ...], labels: np.ndarray, resamples: int, level: float, seed: int
) -> Interval:
    """The AUROC of ``parts[0]`` (minus that of ``parts[1]`` when given) and its percentile
    interval over the same stratified resamples (ties count 1/2, as scikit-learn's)."""
    parts = tuple(np.asarray(p, dtype=np.float64).reshape(-1) for p in parts)
    labels = np.asarray(labels).astype(bool).reshape(-1)
    if any(p.shape != labels.shape for p in parts):
        raise ValueError(f"shapes differ: {[p.shape for p in parts]}, labels {labels.shape}")
    if labels.all() or not labels.any():
        raise ValueError("AUROC needs good and defective images")
    if not 0.0 < level < 1.0 or resamples < 1:
        raise ValueError(f"need 0 < level < 1 and resamples >= 1, got {level}, {resamples}")
    good, bad = np.flatnonzero(~labels), np.flatnonzero(labels)
    values = [_mann_whitney_rows(p, good[None], bad[None])[0] for p in parts]
    aurocs = _resampled_aurocs(parts, good, bad, resamples, np.random.default_rng(seed))
    value, spread = values[0] - sum(values[1:]), aurocs[0] - sum(aurocs[1:])
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(spread, [tail, 1.0 - tail])
    return Interval(float(value), float(low), float(high), level, resamples)


def _resampled_aurocs(
    parts: tuple[np.ndarray, ...],
    good: np.ndarray,
    bad: np.ndarray,
    resamples: int,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """(R,) AUROCs of each score array of ``parts`` on the same ``resamples`` stratified
    resamples: per resample, ``rng.choice(good, good.size)`` then ``rng.choice(bad, bad.size)``,
    drawn as positions (the same stream, half the calls' cost)."""
    draws = [(rng.integers(0, good.size, good.size), rng.integers(0, bad.size, bad.size))
             for _ in range(resamples)]  # fmt: skip
    goods, bads = good[np.stack([g for g, _ in draws])], bad[np.stack([b for _, b in draws])]
    return [_mann_whitney_rows(scores, goods, bads) for scores in parts]


def _mann_whitney_rows(scores: np.ndarray, goods: np.ndarray, bads: np.ndarray) -> np.ndarray:
    """(R,) AUROCs (ties 1/2) of ``scores`` on each row of (R, G) ``goods`` and (R, B) ``bads``
    indices, in blocks of resamples (~4 M comparisons a block)."""
    pairs = goods.shape[1] * bads.shape[1]
    step = max(1, 4_000_000 // pairs)
    aurocs = np.empty(len(goods))
    for start in range(0, len(goods), step):
        g = scores[goods[start : start + step]][:, None, :]
        b = scores[bads[start : start + step]][:, :, None]
        greater, equal = (b > g).sum(axis=(1, 2)), (b == g).sum(axis=(1, 2))
        aurocs[start : start + step] = (greater + 0.5 * equal) / pairs
    return aurocs
