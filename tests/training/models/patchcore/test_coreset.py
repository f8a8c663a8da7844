"""Our greedy k-center against anomalib's KCenterGreedy, and the memory bank cap."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inspection.training.models.patchcore.coreset import (
    _LazyGreedy,
    coreset_size,
    greedy_k_center,
    select_coreset,
    sparse_random_matrix,
)


def coverage_radius(embedding: torch.Tensor, centers: torch.Tensor) -> float:
    """Largest distance from any (n, d) row to its nearest of (k, d) ``centers``."""
    return float(torch.cdist(embedding.float(), centers.float()).min(dim=1).values.max())


def clustered(n: int, d: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    centers = 3.0 * torch.randn(20, d, generator=generator)
    labels = torch.randint(20, (n,), generator=generator)
    return centers[labels] + torch.randn(n, d, generator=generator)


def seed(value: int) -> None:
    torch.manual_seed(value)
    np.random.seed(value)  # anomalib's projection draws column indices from numpy


@pytest.mark.parametrize("n, d", [(61440, 152), (5000, 6), (100, 1)])
def test_projection_matrix_is_anomalibs_draw_for_draw(n: int, d: int) -> None:
    from anomalib.models.components import SparseRandomProjection

    seed(5)
    reference = SparseRandomProjection(eps=0.9).fit(torch.zeros(n, d))
    after_reference = torch.rand(4), np.random.rand(4)
    seed(5)
    matrix = sparse_random_matrix(reference.n_components, d)
    assert torch.equal(matrix, reference.sparse_random_matrix)
    after = torch.rand(4), np.random.rand(4)  # the generators are left where anomalib leaves them
    assert torch.equal(after[0], after_reference[0])
    assert np.array_equal(after[1], after_reference[1])


@pytest.mark.parametrize("n, d, ratio", [(1500, 48, 0.04), (3000, 24, 0.02)])
def test_selection_matches_anomalib(n: int, d: int, ratio: float) -> None:
    from anomalib.models.components import KCenterGreedy

    embedding = clustered(n, d, seed=n)
    seed(3)
    reference = KCenterGreedy(embedding=embedding, sampling_ratio=ratio).select_coreset_idxs()
    seed(3)
    ours = select_coreset(embedding, ratio)

    assert len(ours.indices) == len(reference) == int(n * ratio)
    assert ours.indices.tolist() == reference
    radius_ours = coverage_radius(embedding, embedding[ours.indices])
    radius_ref = coverage_radius(embedding, embedding[reference])
    assert radius_ours == pytest.approx(radius_ref, rel=0.05)


def test_greedy_is_farthest_point() -> None:
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [5.0, 0.0]])
    result = greedy_k_center(points, 3, start=0)
    assert result.indices.tolist() == [0, 2, 3]
    assert result.radius == pytest.approx(1.0)


def test_prior_centers_are_not_picked_again() -> None:
    points = torch.tensor([[0.0], [1.0], [9.0], [10.0]])
    prior = torch.tensor([0.0, 1.0, 81.0, 100.0])  # squared distances to a center at 0
    result = greedy_k_center(points, 1, start=None, min_sq=prior)
    assert result.indices.tolist() == [3]
    assert result.radius == pytest.approx(1.0)


def test_cap_bounds_the_coreset() -> None:
    embedding = clustered(4000, 16, seed=1)
    seed(0)
    assert len(select_coreset(embedding, 0.1, cap_rows=64).indices) == 64
    assert coreset_size(4000, 0.1) == 400
    assert coreset_size(4000, 0.1, cap_rows=10_000) == 400


@pytest.mark.parametrize(
    "n, ratio, cap, message",
    [(10, 0.0, None, "ratio must be in"), (10, 0.01, None, "would be empty"),
     (10, 0.5, 0, "at least 1 row")],
)  # fmt: skip
def test_bad_sizes(n: int, ratio: float, cap: int | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        coreset_size(n, ratio, cap)


@pytest.mark.parametrize(
    "prior, batch, pool",
    [(False, 32, 8192), (True, 32, 8192), (False, 1, 8192), (True, 1, 8192), (False, 32, 64),
     (True, 32, 64), (False, 1, 256)],
)  # fmt: skip
def test_lazy_updates_keep_the_full_scan_picks(
    prior: bool, batch: int, pool: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_LazyGreedy, "BATCH", batch)  # 1: the second round runs on most picks
    monkeypatch.setattr(_LazyGreedy, "POOL", pool)  # below 6000: searched among a pool
    features = clustered(6000, 12, seed=5)
    min_sq = torch.rand(6000) * 4.0 if prior else None
    full = greedy_k_center(features, 300, start=0, min_sq=min_sq, lazy=False)
    lazy = greedy_k_center(features, 300, start=0, min_sq=min_sq)
    assert lazy.indices.tolist() == full.indices.tolist()
    assert lazy.radius == pytest.approx(full.radius, rel=1e-5)
    exact = torch.cdist(features, features[lazy.indices]).min(dim=1).values.square()
    if min_sq is not None:
        exact = torch.minimum(exact, min_sq)
    assert lazy.radius == pytest.approx(float(exact.max().sqrt()), rel=1e-4)


@pytest.mark.parametrize("d", [6, 48])
def test_rows_of_fewer_numbers_than_the_projection_pick_as_their_projection_would(d: int) -> None:
    """Rows of fewer numbers than anomalib's projection (local statistics' 6; PatchCore's 152
    against 272): the greedy in their own dimensions on the projected distances picks as the
    greedy on anomalib's projection does (full scans for 6, lazy updates for 48)."""
    from anomalib.models.components.dimensionality_reduction import SparseRandomProjection

    rows = clustered(6000, d, seed=3)
    seed(0)
    ours = select_coreset(rows, 0.01)
    seed(0)
    projector = SparseRandomProjection(eps=0.9).fit(rows)
    projected = projector.transform(rows).float()
    assert projected.shape[1] > 200
    start = int(torch.randint(high=len(rows), size=(1,)).squeeze())
    reference = greedy_k_center(projected, 60, start=start, lazy=False)
    assert torch.equal(ours.indices, reference.indices)
    assert ours.radius == pytest.approx(reference.radius, rel=1e-4)


def test_fold_banks_are_selected_as_the_trained_bank_is() -> None:
    from inspection.training.models.patchcore.coreset import grouped_coreset_rows, seed_selection
    from inspection.training.models.patchcore.out_of_fold import fold_banks, fold_of

    rows = list(clustered(4000, 24, seed=5).split(100))  # 40 images of 100 rows
    assignment = fold_of(len(rows), 5, seed=0)
    banks = fold_banks(rows, assignment, 0.05, None, seed=7)
    halves = [r.half() for r in rows]
    grouped = fold_banks(halves, assignment, 0.05, None, 7, budget_bytes=60_000)
    assert len(banks) == len(grouped) == 5
    cores = []  # past the rows budget: each fold's grouped coreset, as the trained bank's groups
    for fold in range(5):
        seed_selection(7 + fold)
        own = [halves[i] for i in np.flatnonzero(assignment == fold)]
        cores.append(grouped_coreset_rows(own, 0.05, None, 60_000))
    for fold, bank in enumerate(banks):  # selected two at a time: the one-by-one banks
        others = [rows[i] for i in np.flatnonzero(assignment != fold)]
        seed_selection(7 + fold)
        whole = torch.cat(others)
        assert torch.equal(bank, whole[select_coreset(whole, 0.05).indices])
        held = torch.cat([rows[i] for i in np.flatnonzero(assignment == fold)])
        assert not (held[:, None, :] == bank[None]).all(-1).any()  # never its own fold's rows
        expected = torch.cat(cores[:fold] + cores[fold + 1 :])  # the others' union
        assert torch.equal(grouped[fold], expected) and len(expected) == len(bank)
        assert not (held.half().float()[:, None, :] == expected[None]).all(-1).any()
    capped = fold_banks(rows, assignment, 0.05, 40, seed=7)
    assert all(len(bank) == 40 for bank in capped)  # the trained bank's cap, whole
    capped = fold_banks(halves, assignment, 0.05, 40, 7, budget_bytes=60_000)
    assert all(len(bank) == 40 for bank in capped)  # the union cut to it, as the trained bank


@pytest.mark.parametrize("seed_", [0, 1, 2])
def test_grouped_coreset_covers_as_one_coreset_does(seed_: int) -> None:
    """A plant's rows in groups (float16, bounded memory): the union of the groups' coresets,
    reduced to one coreset's k, covers all rows within 10 % of one coreset of them all
    (measured 0.996-1.021 on these; the composable bound is 2x). The rows are sorted so each
    group holds other clusters: a group left out would leave whole clusters uncovered."""
    from inspection.training.models.patchcore.coreset import grouped_coreset_rows

    rows = clustered(40000, 152, seed_)
    rows = rows[torch.argsort(rows[:, 0])]
    seed(seed_)
    exact = rows[select_coreset(rows, 0.01).indices]
    seed(seed_)
    chunks = list(rows.half().split(1000))
    bank = grouped_coreset_rows(chunks, 0.01, None, budget_bytes=10_000 * 152 * 8)
    assert bank.dtype == torch.float32 and bank.shape == exact.shape
    assert coverage_radius(rows, bank) <= 1.10 * coverage_radius(rows, exact)
