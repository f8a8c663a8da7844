"""Greedy k-center coreset selection for PatchCore memory banks, vectorised in torch.

Same result definition as anomalib's ``KCenterGreedy``: the embedding is projected with
anomalib's ``SparseRandomProjection(eps=0.9)``, the first center is drawn with ``torch.randint``
right after (so a run seeded like anomalib's, torch and numpy as ``lightning.seed_everything``
does, projects and starts exactly as anomalib's would), and each step keeps the patch
farthest from the centers kept so far, ``k = int(n * ratio)`` steps in all.

What differs is the arithmetic: anomalib allocates and reduces an (n, d) difference matrix per
step; here each step is one matrix-vector product over the projected features held in one
contiguous buffer, ``|x - c|^2 = |x|^2 - 2 x.c + |c|^2``, and an in-place running minimum. The
step is memory-bound: on the 2-core target a second thread gains nothing idle and costs ~5x when
the other core is busy (measured), so the loop runs on one thread; the projection uses all. Float rounding may break near-ties differently, so the picks can drift from
anomalib's after a tie; the coverage radius stays the same within a few percent (tests pin it).

``cap_rows`` bounds the bank (``memory_bank_max``): the coreset size is
``min(int(n * ratio), cap_rows)``, i.e. the effective ratio shrinks as training sets grow.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Coreset:
    """Selected rows of an (n, d) embedding.

    ``indices``: (k,) int64 into the embedding, in selection order; ``radius``: coverage
    radius in the projected space (largest distance from any row to its nearest kept row).
    """

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


def project(embedding: torch.Tensor) -> torch.Tensor:
    """anomalib's sparse random projection of (n, d) rows (consumes torch's RNG like anomalib)."""
    from anomalib.models.components.dimensionality_reduction import SparseRandomProjection

    projector = SparseRandomProjection(eps=0.9)
    projector.fit(embedding)
    return projector.transform(embedding).float().contiguous()


def select_coreset(embedding: torch.Tensor, ratio: float, cap_rows: int | None = None) -> Coreset:
    """Greedy k-center over (n, d) float rows, anomalib's projection and random start."""
    if embedding.ndim != 2 or embedding.shape[0] == 0:
        raise ValueError(f"embedding must be (n, d) with n > 0, got {tuple(embedding.shape)}")
    k = coreset_size(embedding.shape[0], ratio, cap_rows)
    with torch.no_grad(), all_cores():
        features = project(embedding)
        start = int(torch.randint(high=features.shape[0], size=(1,)).squeeze())
        return greedy_k_center(features, k, start=start)


def greedy_k_center(
    features: torch.Tensor,
    k: int,
    *,
    start: int | None,
    min_sq: torch.Tensor | None = None,
    block_rows: int = 1024,
) -> Coreset:
    """``k`` greedy farthest-point picks over (n, d) float32 ``features``.

    ``start``: the first pick (``None`` to begin from the farthest row given ``min_sq``).
    ``min_sq``: (n,) squared distances to centers chosen earlier (e.g. an existing memory
    bank), so new picks only cover what those do not; defaults to +inf (no prior centers).

    After a warm-up of full scans, rows are grouped by their nearest center into blocks of
    ``block_rows`` with a centroid and radius; a step skips every block whose triangle-inequality
    lower bound ``|c - centroid| - radius`` cannot beat the block's largest current distance.
    The skipped rows could not have changed, so the picks are those of the full scan.
    """
    n = features.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"cannot pick {k} centers from {n} rows")
    with torch.no_grad(), threads(1):
        state = _GreedyState(features, min_sq)
        index = int(torch.argmax(state.best)) if start is None else start
        picks = torch.empty(k, dtype=torch.int64)
        warmup = min(k, 32) if n >= 4 * block_rows else k
        for step in range(warmup):
            picks[step] = index
            index = state.full_step(index)
        if warmup < k:
            state.make_blocks(block_rows)
            for step in range(warmup, k):
                picks[step] = index
                index = state.block_step(index)
        radius = float(state.best.max().sqrt())
    return Coreset(picks, radius)


class _GreedyState:
    """Running squared distance of every row to its nearest pick (see ``greedy_k_center``)."""

    def __init__(self, features: torch.Tensor, min_sq: torch.Tensor | None) -> None:
        self.x = features.float().contiguous()
        n = self.x.shape[0]
        self.norms = (self.x * self.x).sum(dim=1)
        self.best = torch.full((n,), float("inf")) if min_sq is None else min_sq.float().clone()
        self.owner = torch.full((n,), -1, dtype=torch.int64)
        self.scratch = torch.empty(n)
        self.order: torch.Tensor | None = None  # row of each sorted position, once blocked

    def full_step(self, index: int) -> int:
        """Fold pick ``index`` into every row's distance; return the next pick."""
        torch.mv(self.x, self.x[index], out=self.scratch)
        # |x - c|^2 = |x|^2 - 2 x.c + |c|^2, folded into the running minimum in place
        self.scratch.mul_(-2.0).add_(self.norms).add_(self.norms[index]).clamp_(min=0.0)
        self.owner[self.scratch < self.best] = index
        torch.minimum(self.best, self.scratch, out=self.best)
        self.best[index] = 0.0
        return int(torch.argmax(self.best))

    def make_blocks(self, block_rows: int) -> None:
        """Sort rows by owner into (blocks, block_rows) with centroids and radii."""
        n, d = self.x.shape
        order = torch.argsort(self.owner, stable=True)
        pad = -n % block_rows  # padded rows repeat the first one with distance 0
        self.order = torch.cat([order, order[:1].expand(pad)])
        self.x = self.x[self.order].view(-1, block_rows, d)
        self.norms = self.norms[self.order].view(-1, block_rows)
        self.best = self.best[self.order]
        self.best[n:] = 0.0
        self.best = self.best.view(-1, block_rows)
        self.centroids = self.x.mean(dim=1)
        self.radii = (self.x - self.centroids[:, None]).norm(dim=2).amax(dim=1)
        self.position = torch.empty(n, dtype=torch.int64)
        self.position[order] = torch.arange(n)

    def block_step(self, index: int) -> int:
        """``full_step`` over the blocks that the new center can still improve."""
        block_rows = self.x.shape[1]
        pos = int(self.position[index])
        center = self.x[pos // block_rows, pos % block_rows]
        center_sq = self.norms[pos // block_rows, pos % block_rows]
        bound = ((self.centroids - center).norm(dim=1) - self.radii).clamp_(min=0.0)
        active = torch.nonzero(bound * bound < self.best.amax(dim=1)).squeeze(1)
        if active.numel():
            rows = self.x.index_select(0, active)
            distance = torch.matmul(rows, center).mul_(-2.0)
            distance.add_(self.norms.index_select(0, active)).add_(center_sq).clamp_(min=0.0)
            self.best[active] = torch.minimum(self.best.index_select(0, active), distance)
        self.best.view(-1)[pos] = 0.0
        return int(self.order[int(torch.argmax(self.best))])  # type: ignore[index]


def coverage_radius(
    embedding: torch.Tensor, centers: torch.Tensor, block_rows: int = 8192
) -> float:
    """Largest distance from any (n, d) row to its nearest of (k, d) ``centers`` (blocked)."""
    worst = 0.0
    with torch.no_grad(), all_cores():
        for begin in range(0, embedding.shape[0], block_rows):
            block = embedding[begin : begin + block_rows].float()
            nearest = torch.cdist(block, centers.float()).min(dim=1).values
            worst = max(worst, float(nearest.max()))
    return worst
