"""Out-of-fold PatchCore scores of the training images: good calibration scores for free.

A training image scored by the bank it helped build scores low (its own patches are in it),
so its score says nothing about a new good part. Here the N training images are split into
k seeded folds; each fold is scored by a bank selected (``training.coreset.select_coreset``,
the same ratio and cap as the trained bank) from the other k - 1 folds' patch embeddings.
Every image then has a score from a bank that never saw it, slightly fewer images strong
than the trained one (so, if anything, a little high: a conservative threshold). The
embeddings are computed once; each fold costs one coreset selection and one kNN pass. A model
fusing local statistics (``training.local_stats``) gets its statistics bank from the other folds
too, so neither of its parts has seen the image it scores.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from inspection.core.images import DEFAULT_SOURCE_BITS
from inspection.data.dataset import Sample
from inspection.training.augment import with_views
from inspection.training.coreset import (
    greedy_k_center,
    prepare_selection,
    seed_selection,
    select_coreset,
    threads,
)
from inspection.training.roi import TrainingRoi, per_image_rows
from inspection.training.samples import SampleDataset

logger = logging.getLogger(__name__)


def fold_of(n: int, folds: int, seed: int) -> np.ndarray:
    """(n,) int fold index in [0, folds) of each item, balanced and seeded."""
    if folds < 2 or n < folds:
        raise ValueError(f"need at least 2 folds and one item per fold, got {folds} for {n}")
    order = np.random.default_rng(seed).permutation(n)
    assignment = np.empty(n, dtype=np.int64)
    assignment[order] = np.arange(n) % folds
    return assignment


def out_of_fold_scores(
    model: Any,
    samples: Sequence[Sample],
    *,
    folds: int,
    image_size: tuple[int, int],
    ratio: float,
    cap_rows: int | None,
    seed: int = 0,
    roi: TrainingRoi | None = None,
    batch_size: int = 8,
    bits: int = DEFAULT_SOURCE_BITS,
) -> np.ndarray:
    """(N,) float64 raw image scores of ``samples`` (the training images), each from a bank
    fitted without its fold. ``model``: the trained anomalib ``Patchcore`` (its bank is put
    back afterwards); ``roi``: the training ROI, applied to the fold banks as in training."""
    inner = model.model
    images = model_inputs(model, samples, image_size, bits)
    rows = _fit_rows(model, samples, roi, images.shape[-2:]) or _embeddings(
        inner, images, samples, roi, batch_size, getattr(model, "bank_augment", ())
    )
    assignment = fold_of(len(samples), folds, seed)
    side_banks = _local_stats_fold_banks(inner, images, samples, roi, batch_size, folds)
    trained_banks = _banks(inner)
    banks = fold_banks(rows, assignment, ratio, cap_rows, seed)
    scores = np.empty(len(samples), dtype=np.float64)
    try:
        for fold in range(folds):
            rest = np.flatnonzero(assignment != fold)
            inner.memory_bank = banks[fold]
            if side_banks:
                inner.local_stats.bank = side_banks[fold](rest, ratio, cap_rows)
            held = np.flatnonzero(assignment == fold)
            scores[held] = _score(inner, images[held], batch_size)
    finally:
        _restore_banks(inner, trained_banks)
        if side_banks:
            inner.local_stats.fold_banks = []  # used once: the memory goes back
    logger.info("out-of-fold scores of %d training images (%d folds)", len(samples), folds)
    return scores


def model_inputs(
    model: Any,
    samples: Sequence[Sample],
    image_size: tuple[int, int],
    bits: int = DEFAULT_SOURCE_BITS,
) -> torch.Tensor:
    """(N, 3, H, W) float32: the samples (16-bit ones at ``bits``) through the model's
    pre-processor."""
    dataset = SampleDataset(samples, image_size, bits)
    with torch.no_grad():
        images = torch.stack([dataset[i].image for i in range(len(dataset))])
        return model.pre_processor(images)


def fold_bank(rows: list[torch.Tensor], ratio: float, cap_rows: int | None) -> torch.Tensor:
    """The coreset (``select_coreset``) of the other folds' rows: a fold's bank."""
    others = torch.cat(rows)
    return others[select_coreset(others, ratio, cap_rows).indices].contiguous()


def fold_banks(
    rows: Sequence[torch.Tensor],
    assignment: np.ndarray,
    ratio: float,
    cap_rows: int | None,
    seed: int,
) -> list[torch.Tensor]:
    """Every fold's bank: the coreset of the other folds' ``rows`` (one tensor per image;
    ``assignment``: each image's fold), seeded ``seed + fold``. Two folds are selected at once:
    the greedy loop runs on one core, so the other core takes the next fold (the seeded draws
    before each loop are taken one at a time, so the banks are the same as one by one)."""
    draws = threading.Lock()

    def bank(fold: int) -> torch.Tensor:
        others = torch.cat([rows[i] for i in np.flatnonzero(assignment != fold)])
        with draws:
            seed_selection(seed + fold)
            features, k, start = prepare_selection(others, ratio, cap_rows)
        return others[greedy_k_center(features, k, start=start).indices].contiguous()

    folds = int(assignment.max()) + 1
    with threads(1), ThreadPoolExecutor(2) as pool:
        return list(pool.map(bank, range(folds)))


def _banks(inner: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    head = getattr(inner, "local_stats", None)
    return inner.memory_bank, head.bank if head is not None else None


def _restore_banks(inner: Any, banks: tuple[torch.Tensor, torch.Tensor | None]) -> None:
    inner.memory_bank = banks[0]
    if banks[1] is not None:
        inner.local_stats.bank = banks[1]


def _local_stats_fold_banks(
    inner: Any,
    images: torch.Tensor,
    samples: Sequence[Sample],
    roi: TrainingRoi | None,
    batch_size: int,
    folds: int,
) -> list[Callable[[np.ndarray, float, int | None], torch.Tensor]]:
    """Per fold, how to get its local-statistics bank (``training.local_stats``) when the model
    fuses them ([] otherwise): the banks its fit already selected on the same folds, else a
    coreset of the other folds' z-scored cells."""
    head = getattr(inner, "local_stats", None)
    if head is None or not head.enabled:
        return []
    if len(head.fold_banks) == folds:
        return [lambda *_, bank=bank: bank for bank in head.fold_banks]
    side = per_image_rows(head.rows, images, batch_size, roi, [s.path for s in samples])
    return [lambda rest, ratio, cap: fold_bank([side[i] for i in rest], ratio, cap)] * folds


def _fit_rows(
    model: Any, samples: Sequence[Sample], roi: TrainingRoi | None, size: Sequence[int]
) -> list[torch.Tensor]:
    """Per image, the patch rows its fit collected (``Patchcore.train_rows``), ROI applied as
    in ``_embeddings``; [] when the fit did not see every sample (then they are computed)."""
    kept = getattr(model, "train_rows", {})
    if not all(str(s.path) in kept for s in samples):
        return []
    rows = [kept[str(s.path)] for s in samples]
    if roi is not None:
        rows = [
            r[roi.keep_rows([str(s.path)], r, tuple(size))]
            for r, s in zip(rows, samples, strict=True)
        ]
    return [r.contiguous() for r in rows]


def _embeddings(
    inner: Any,
    images: torch.Tensor,
    samples: Sequence[Sample],
    roi: TrainingRoi | None,
    batch_size: int,
    bank_views: Sequence[str] = (),
) -> list[torch.Tensor]:
    """Per image, its (rows, d) patch embedding as training collects it (ROI applied; its
    ``bank_views``' rows appended, ``training.augment``), so an image and its views share a fold."""

    def embed(batch: torch.Tensor) -> torch.Tensor:
        features = inner.feature_extractor(batch)
        pooled = {k: inner.feature_pooler(v) for k, v in features.items()}
        embedding = inner.reshape_embedding(inner.generate_embedding(pooled))
        return embedding.reshape(len(batch), -1, embedding.shape[-1])

    rows_of = with_views(embed, bank_views)
    return per_image_rows(rows_of, images, batch_size, roi, [s.path for s in samples])


def _score(inner: Any, images: torch.Tensor, batch_size: int) -> np.ndarray:
    from inspection.training.backbones import channels_last

    inner.eval()
    scores = []
    with torch.no_grad(), channels_last(inner):
        for start in range(0, len(images), batch_size):
            output = inner(images[start : start + batch_size])
            scores.append(output.pred_score.reshape(-1).double().numpy())
    return np.concatenate(scores)
