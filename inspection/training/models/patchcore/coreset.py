"""Greedy k-center coreset selection for PatchCore memory banks, vectorised in torch.

Same picks as anomalib's ``KCenterGreedy`` (same projection and seeded first center), with
distances ``|x|^2 - 2 x.c + |c|^2`` updated lazily (``_LazyGreedy``) on one thread (a second
OpenMP thread beside a busy core slows it). Float rounding may break near-ties differently.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import numpy as np
import torch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Coreset:
    """``indices``: (k,) int64 rows in selection order; ``radius``: the projected cover radius."""

    indices: torch.Tensor
    radius: float


def coreset_size(n_rows: int, ratio: float, cap_rows: int | None = None) -> int:
    """``int(n_rows * ratio)`` (anomalib's k), at most ``cap_rows``; at least 1."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"coreset ratio must be in (0, 1], got {ratio}")
    if cap_rows is not None and cap_rows < 1:
        raise ValueError(f"memory bank cap must be at least 1 row, got {cap_rows}")
    size = int(n_rows * ratio)
    if size <= 0:
        raise ValueError(f"coreset of {n_rows} rows at ratio {ratio} would be empty")
    return min(size, cap_rows) if cap_rows is not None else size


@contextmanager
def threads(count: int) -> Iterator[None]:
    """Run torch intra-op work on ``count`` threads inside the block."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def all_cores() -> AbstractContextManager[None]:
    """Every CPU core for torch intra-op work inside the block."""
    return threads(max(torch.get_num_threads(), os.cpu_count() or 1))


def seed_selection(value: int) -> None:
    """Seed what a selection draws from: torch (the start row) and numpy's global RNG
    (anomalib's sparse projection matrix), so a seeded selection repeats exactly."""
    torch.manual_seed(value)
    np.random.seed(value)


FEW_DIMS = 16
"""Rows of at most this many numbers (the local statistics' 6) run the greedy in full scans:
lazy updates (``_LazyGreedy``) pay off only with many dimensions."""


def project(embedding: torch.Tensor) -> torch.Tensor:
    """anomalib's sparse random projection of (n, d) rows (consumes torch's RNG like anomalib).
    Rows of fewer columns than the projection's are kept in their own d: the same distances, so
    the same picks at d / n_components of the arithmetic."""
    # deferred: anomalib (5 s on top of torch), only for the projected greedy coreset
    from anomalib.models.components.dimensionality_reduction import SparseRandomProjection

    embedding = embedding.float()  # float16 rows of a large fit (none copied when float32)
    projector = SparseRandomProjection(eps=0.9)
    projector.n_components = int(projector._johnson_lindenstrauss_min_dim(embedding.shape[0], 0.9))
    projector.sparse_random_matrix = sparse_random_matrix(
        projector.n_components, embedding.shape[1]
    )
    if embedding.shape[1] >= projector.n_components:
        return projector.transform(embedding).float().contiguous()
    # the projected rows' distances in the rows' own dimensions: |P(x - y)|^2 =
    # (x - y)^T P^T P (x - y) = |F^T (x - y)|^2 with F = V sqrt(W) of P^T P = V W V^T
    matrix = projector.sparse_random_matrix.double()
    values, vectors = torch.linalg.eigh(matrix.T @ matrix)
    factor = vectors * values.clamp_min(0).sqrt()
    if embedding.shape[1] <= FEW_DIMS:
        return (embedding.double() @ factor).float().contiguous()
    return (embedding @ factor.float()).contiguous()  # as anomalib's float32 transform


def sparse_random_matrix(n_components: int, n_features: int) -> torch.Tensor:
    """anomalib's ``SparseRandomProjection._sparse_random_matrix`` with the same draws, without
    building two ``torch.distributions.Binomial`` per row (slow)."""
    from sklearn.utils.random import sample_without_replacement  # deferred: used here only

    real = torch.get_default_dtype()  # what Binomial makes of plain numbers (broadcast_all)
    one, half = torch.tensor(1, dtype=real), torch.tensor(0.5, dtype=real)

    def signs(shape: tuple[int, ...]) -> torch.Tensor:
        return torch.binomial(one.expand(shape), half.expand(shape)) * 2 - 1

    density = 1 / np.sqrt(n_features)
    if density == 1:
        return 1 / np.sqrt(n_components) * signs((n_components, n_features))
    total, probs = torch.tensor(n_features, dtype=real), torch.tensor(density, dtype=real)
    components = torch.zeros((n_components, n_features), dtype=torch.float32)
    for row in range(n_components):
        count = torch.binomial(total, probs)
        columns = sample_without_replacement(n_population=n_features, n_samples=count)
        columns = torch.tensor(columns, dtype=torch.int32)
        components[row, columns] = signs(tuple(columns.shape))
    components *= np.sqrt(1 / density) / np.sqrt(n_components)
    return components


def select_coreset(embedding: torch.Tensor, ratio: float, cap_rows: int | None = None) -> Coreset:
    """Greedy k-center over (n, d) float rows, anomalib's projection and random start."""
    features, k, start = prepare_selection(embedding, ratio, cap_rows)
    return greedy_k_center(features, k, start=start)


def grouped_coreset_rows(
    chunks: Sequence[torch.Tensor], ratio: float, cap_rows: int | None, budget_bytes: int
) -> torch.Tensor:
    """(k, d) float32 rows from (n_i, d) row ``chunks`` in bounded memory: a coreset of each group
    (at most ``budget_bytes``), then one of their union (composable: cover radius at most twice)."""
    n, dim = sum(len(c) for c in chunks), chunks[0].shape[1]
    if n == 0:
        raise RuntimeError("the ROI keeps no training patch: check the product's roi polygons")
    k = coreset_size(n, ratio, cap_rows)
    group_rows = max(k, budget_bytes // (2 * 4 * dim))
    cores: list[torch.Tensor] = []
    group: list[torch.Tensor] = []
    for index, chunk in enumerate(chunks):
        group.append(chunk)
        if sum(len(c) for c in group) >= group_rows or index == len(chunks) - 1:
            rows = torch.cat(group).float()
            size = coreset_size(len(rows), max(ratio, 1 / len(rows)), cap_rows)  # small last one
            cores.append(rows[select_coreset(rows, 1.0, size).indices])
            group = []
    union = torch.cat(cores)
    k = min(k, len(union))
    features, _, first = prepare_selection(union, 1.0, k)
    coreset = greedy_k_center(features, k, start=first)
    logger.info(
        "memory bank: %d of %d patches, from the coresets of %d groups (%d rows; coverage "
        "radius of their union %.3f in projected space)",
        k, n, len(cores), len(union), coreset.radius,
    )  # fmt: skip
    return union[coreset.indices].contiguous()


def prepare_selection(
    embedding: torch.Tensor, ratio: float, cap_rows: int | None = None
) -> tuple[torch.Tensor, int, int]:
    """What ``select_coreset`` draws before its greedy loop: (projected rows, k, first pick).
    It consumes the global RNGs (``seed_selection``); the loop that follows does not."""
    if embedding.ndim != 2 or embedding.shape[0] == 0:
        raise ValueError(f"embedding must be (n, d) with n > 0, got {tuple(embedding.shape)}")
    k = coreset_size(embedding.shape[0], ratio, cap_rows)
    with torch.no_grad(), all_cores():
        features = project(embedding)
        start = int(torch.randint(high=features.shape[0], size=(1,)).squeeze())
    return features, k, start


def greedy_k_center(
    features: torch.Tensor,
    k: int,
    *,
    start: int | None,
    min_sq: torch.Tensor | None = None,
    lazy: bool | None = None,
) -> Coreset:
    """``k`` greedy farthest-point picks over (n, d) float32 ``features``. ``start``: the first
    pick (None: farthest given ``min_sq``, (n,) squared distances to an existing bank). ``lazy``:
    ``_LazyGreedy`` or the full scan (same picks up to near-ties); None: lazy above ``FEW_DIMS``."""
    n = features.shape[0]
    lazy = features.shape[1] > FEW_DIMS if lazy is None else lazy
    if not 1 <= k <= n:
        raise ValueError(f"cannot pick {k} centers from {n} rows")
    with torch.no_grad(), threads(1):
        state = (_LazyGreedy if lazy else _FullScan)(features, min_sq, k)
        index = int(torch.argmax(state.best)) if start is None else start
        picks = torch.empty(k, dtype=torch.int64)
        for step in range(k):
            picks[step] = index
            state.add(index, step)
            index = state.farthest(step + 1)
        radius = float(state.best[index].clamp(min=0.0).sqrt())
    return Coreset(picks, radius)


class _FullScan:
    """Every row's squared distance to its nearest pick, updated over all rows per pick."""

    def __init__(self, features: torch.Tensor, min_sq: torch.Tensor | None, k: int) -> None:
        self.x = features.float().contiguous()
        self.norms = (self.x * self.x).sum(dim=1)
        n = self.x.shape[0]
        self.best = torch.full((n,), float("inf")) if min_sq is None else min_sq.float().clone()
        self.scratch = torch.empty(n)

    def add(self, index: int, pick: int) -> None:
        # |x - c|^2 = |x|^2 - 2 x.c + |c|^2, folded into the running minimum
        distance = torch.mv(self.x, self.x[index], out=self.scratch).mul_(-2.0)
        distance.add_(self.norms).add_(self.norms[index]).clamp_(min=0.0)
        torch.minimum(self.best, distance, out=self.best)
        self.best[index] = 0.0

    def farthest(self, picked: int) -> int:
        return int(torch.argmax(self.best))


class _LazyGreedy(_FullScan):
    """Greedy k-center that updates only the rows that could be the next pick: ``best`` holds
    upper bounds that only shrink; the largest are brought up to date until the largest true
    distance beats every other bound, so each pick is exactly the full scan's."""

    BATCH = 32  # top bounds brought up to date first
    CHUNK = 128  # picks per matrix product
    POOL = 8192
    """Rows of the highest bounds the per-pick search runs on (``farthest``), not all n."""

    def __init__(self, features: torch.Tensor, min_sq: torch.Tensor | None, k: int) -> None:
        super().__init__(features, min_sq, k)
        self.seen = torch.zeros(self.x.shape[0], dtype=torch.int64)
        self.centers = torch.empty(k, self.x.shape[1])
        self.center_norms = torch.empty(k)
        self.pool: torch.Tensor | None = None
        self.floor = float("inf")

    def add(self, index: int, pick: int) -> None:
        self.centers[pick] = self.x[index]
        self.center_norms[pick] = self.norms[index]
        if pick == 0:
            super().add(index, pick)
            self.seen.fill_(1)
        self.best[index] = 0.0
        self.seen[index] = pick + 1

    def farthest(self, picked: int) -> int:
        """The row farthest from the picks so far: from the ``POOL`` highest bounds when it beats
        the pool's floor, else from all rows, refilling the pool."""
        if self.best.shape[0] <= self.POOL:
            return self._farthest_among(None, picked)
        if self.pool is not None:
            pick = self._farthest_among(self.pool, picked)
            if self.best[pick] >= self.floor:
                return pick
        values, self.pool = torch.topk(self.best, self.POOL)
        self.floor = float(values[-1])
        return self._farthest_among(None, picked)

    def _farthest_among(self, pool: torch.Tensor | None, picked: int) -> int:
        """The farthest of ``pool``'s rows (None: all rows)."""
        bounds = self.best if pool is None else self.best[pool]
        # the top bounds first: their largest true distance is a lower bound of the farthest
        rows = torch.topk(bounds, min(self.BATCH, bounds.shape[0])).indices
        rows = rows if pool is None else pool[rows]
        self._update(rows, picked)
        top = int(rows[torch.argmax(self.best[rows])])
        # every row whose bound exceeds it may be farther: bring those up to date too
        bounds = self.best if pool is None else self.best[pool]
        rows = torch.nonzero(bounds > self.best[top]).squeeze(1)
        rows = rows if pool is None else pool[rows]
        if rows.numel() == 0:
            return top
        self._update(rows, picked)
        farthest = int(rows[torch.argmax(self.best[rows])])
        return farthest if self.best[farthest] > self.best[top] else top

    def _update(self, rows: torch.Tensor, picked: int) -> None:
        """Fold picks ``seen[row]`` .. ``picked - 1`` into ``best[row]`` for ``rows``."""
        seen = self.seen[rows]
        for begin in range(int(seen.min()), picked, self.CHUNK):
            end = min(begin + self.CHUNK, picked)
            stale = rows[seen < end]
            product = self.x[stale] @ self.centers[begin:end].T
            product.mul_(-2.0).add_(self.norms[stale, None]).add_(self.center_norms[begin:end])
            nearest = product.min(dim=1).values.clamp_(min=0.0)
            self.best[stale] = torch.minimum(self.best[stale], nearest)
        self.seen[rows] = picked
