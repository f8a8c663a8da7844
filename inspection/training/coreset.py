"""Greedy k-center coreset selection for PatchCore memory banks, vectorised in torch.

Same result definition as anomalib's ``KCenterGreedy``: the embedding is projected with
anomalib's ``SparseRandomProjection(eps=0.9)``, the first center is drawn with ``torch.randint``
right after (so a run seeded like anomalib's, torch and numpy as ``lightning.seed_everything``
does, projects and starts exactly as anomalib's would), and each step keeps the patch
farthest from the centers kept so far, ``k = int(n * ratio)`` steps in all.

What differs is the arithmetic: anomalib allocates and reduces an (n, d) difference matrix per
step; here a step is a matrix-vector product, ``|x - c|^2 = |x|^2 - 2 x.c + |c|^2``, over only
the rows the new center could bring closer (exact triangle-inequality pruning, see
``greedy_k_center``), folded into a running minimum. The step is memory-bound: on the 2-core
target a second thread gains nothing idle and costs ~5x when the other core is busy (measured),
so the loop runs on one thread; the projection uses all. Float rounding may break near-ties
differently, so the picks can drift from anomalib's after a tie; the coverage radius stays the
same within a few percent (tests pin it).

``cap_rows`` bounds the bank (``memory_bank_max``): the coreset size is
``min(int(n * ratio), cap_rows)``, i.e. the effective ratio shrinks as training sets grow.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import torch

FULL_SCAN_FRACTION = 0.4  # past this share of candidate rows, a step scans all rows


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
    prune: bool = True,
) -> Coreset:
    """``k`` greedy farthest-point picks over (n, d) float32 ``features``.

    ``start``: the first pick (``None`` to begin from the farthest row given ``min_sq``).
    ``min_sq``: (n,) squared distances to centers chosen earlier (e.g. an existing memory
    bank), so new picks only cover what those do not; defaults to +inf (no prior centers).

    ``prune``: a step skips every row whose nearest center ``o`` is so far from the new
    center ``c`` that it cannot get closer (triangle inequality: ``|o - c| >= 2 |x - o|``
    implies ``|x - c| >= |x - o|``); skipped rows could not change, so the picks are those of
    the full scan (``prune=False``) up to float rounding of near-ties.
    """
    n = features.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"cannot pick {k} centers from {n} rows")
    with torch.no_grad(), threads(1):
        state = _GreedyState(features, min_sq, k)
        index = int(torch.argmax(state.best)) if start is None else start
        picks = torch.empty(k, dtype=torch.int64)
        for step in range(k):
            picks[step] = index
            index = state.step(index, step, prune=prune)
        radius = float(state.best.max().sqrt())
    return Coreset(picks, radius)


class _GreedyState:
    """Running squared distance of every row to its nearest pick (see ``greedy_k_center``)."""

    def __init__(self, features: torch.Tensor, min_sq: torch.Tensor | None, k: int) -> None:
        self.x = features.float().contiguous()
        n, d = self.x.shape
        self.norms = (self.x * self.x).sum(dim=1)
        self.best = torch.full((n,), float("inf")) if min_sq is None else min_sq.float().clone()
        # pick number of each row's nearest center; k = "a prior center": always re-checked
        self.owner = torch.full((n,), k, dtype=torch.int64)
        self.centers = torch.empty(k, d)
        self.center_sq = torch.zeros(k + 1)  # |owner - c|^2 per pick; slot k stays 0
        self.scratch = torch.empty(n)

    def step(self, index: int, pick: int, *, prune: bool) -> int:
        """Fold pick number ``pick`` (row ``index``) into the distances; return the next pick."""
        center = self.x[index]
        self.centers[pick] = center
        rows = self._candidates(center, pick) if prune and pick > 0 else None
        if rows is not None:
            distance = torch.mv(self.x.index_select(0, rows), center)
            distance.mul_(-2.0).add_(self.norms.index_select(0, rows))
        else:
            distance = torch.mv(self.x, center, out=self.scratch).mul_(-2.0).add_(self.norms)
        # |x - c|^2 = |x|^2 - 2 x.c + |c|^2, folded into the running minimum
        distance.add_(self.norms[index]).clamp_(min=0.0)
        current = self.best if rows is None else self.best.index_select(0, rows)
        closer = distance < current
        changed = torch.nonzero(closer).squeeze(1) if rows is None else rows[closer]
        self.best[changed] = distance[closer]
        self.owner[changed] = pick
        self.best[index] = 0.0
        self.owner[index] = pick
        return int(torch.argmax(self.best))

    def _candidates(self, center: torch.Tensor, pick: int) -> torch.Tensor | None:
        """Rows the new center may bring closer; ``None`` when most may (a full scan is cheaper
        than gathering them: in high dimensions the bound rarely prunes early picks)."""
        between = self.centers[: pick + 1] - center
        self.center_sq[: pick + 1] = (between * between).sum(dim=1)
        mask = self.center_sq[self.owner] < 4.0 * self.best
        if int(mask.sum()) > FULL_SCAN_FRACTION * mask.numel():
            return None
        return torch.nonzero(mask).squeeze(1)


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
