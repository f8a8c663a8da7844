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
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from inspection.core.images import DEFAULT_SOURCE_BITS
from inspection.data.dataset import Sample
from inspection.training.augment import with_views
from inspection.training.coreset import seed_selection, select_coreset
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
    rows = _embeddings(inner, images, samples, roi, batch_size, getattr(model, "bank_augment", ()))
    assignment = fold_of(len(samples), folds, seed)
    side = _local_stats_rows(inner, images, samples, roi, batch_size)
    trained_banks = _banks(inner)
    scores = np.empty(len(samples), dtype=np.float64)
    try:
        for fold in range(folds):
            rest = np.flatnonzero(assignment != fold)
            seed_selection(seed + fold)
            inner.memory_bank = fold_bank([rows[i] for i in rest], ratio, cap_rows)
            if side:
                inner.local_stats.bank = fold_bank([side[i] for i in rest], ratio, cap_rows)
            held = np.flatnonzero(assignment == fold)
            scores[held] = _score(inner, images[held], batch_size)
    finally:
        _restore_banks(inner, trained_banks)
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


def _banks(inner: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    head = getattr(inner, "local_stats", None)
    return inner.memory_bank, head.bank if head is not None else None


def _restore_banks(inner: Any, banks: tuple[torch.Tensor, torch.Tensor | None]) -> None:
    inner.memory_bank = banks[0]
    if banks[1] is not None:
        inner.local_stats.bank = banks[1]


def _local_stats_rows(
    inner: Any,
    images: torch.Tensor,
    samples: Sequence[Sample],
    roi: TrainingRoi | None,
    batch_size: int,
) -> list[torch.Tensor]:
    """Per image, its z-scored local-statistics cells (``training.local_stats``), when the
    model fuses them; [] otherwise. The fold's statistics bank is built from these."""
    head = getattr(inner, "local_stats", None)
    if head is None or not head.enabled:
        return []
    return per_image_rows(head.rows, images, batch_size, roi, [s.path for s in samples])


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
