"""Out-of-fold PatchCore scores of the training images: good calibration scores for free.

A training image scored by the bank it helped build scores low, so each of k seeded folds is
scored by a bank of the other folds' embeddings (``fold_banks``), replayed from the fit: a
little weaker than the trained bank, if anything a conservative threshold.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from inspection.core.images import DEFAULT_SOURCE_BITS
from inspection.core.product_config import ModelConfig
from inspection.core.roi import RoiSpec, apply_roi_batch
from inspection.data.dataset import Sample
from inspection.training.augment import with_views
from inspection.training.backbones import channels_last
from inspection.training.models.patchcore.coreset import (
    greedy_k_center,
    grouped_coreset_rows,
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
    config: ModelConfig,
    samples: Sequence[Sample],
    roi: TrainingRoi | None = None,
    stages: Callable[[str, int, int], None] | None = None,
) -> np.ndarray:
    """(N,) float64 raw image scores of the training ``samples``, each from a bank fitted without
    its fold; ``model``'s bank is put back afterwards, ``stages`` told of each fold scored."""
    inner, folds, image_size = model.model, config.calibration_folds, config.image_size
    ratio, cap_rows, seed = config.coreset_sampling_ratio, config.memory_bank_max, config.seed
    batch_size, bits = config.batch_size, config.image_bits
    own, images = _scoring_inputs(model, samples, image_size, bits, config.image_range)
    if own is None:
        views = getattr(model, "bank_augment", ())
        rows = _embeddings(inner, images, samples, roi, batch_size, views)
    else:
        rows = _fit_rows(model, samples, roi, image_size)
    assignment = fold_of(len(samples), folds, seed)
    side_banks = _local_stats_fold_banks(
        inner, images, samples, roi, batch_size, assignment, (ratio, cap_rows, seed)
    )
    head = getattr(inner, "local_stats", None)
    trained = inner.memory_bank, None if head is None else head.bank
    budget = getattr(model, "rows_budget_bytes", None) if getattr(model, "compact", False) else None
    banks = fold_banks(rows, assignment, ratio, cap_rows, seed, budget_bytes=budget)
    scores = np.empty(len(samples), dtype=np.float64)
    try:
        for fold in range(folds):
            inner.memory_bank = banks[fold]
            if side_banks:
                head.bank = side_banks[fold]
            held = np.flatnonzero(assignment == fold)
            scores[held] = score_images(
                inner, held, images, own, image_size=image_size, batch_size=batch_size,
                roi=roi.spec if roi is not None else None,
            )  # fmt: skip
            if stages is not None:
                stages("out-of-fold scores", fold + 1, folds)
    finally:
        inner.memory_bank = trained[0]
        if head is not None:
            head.bank = trained[1]
        if side_banks:
            head.fold_banks = []  # used once: the memory goes back
    logger.info("out-of-fold scores of %d training images (%d folds)", len(samples), folds)
    return scores


def trained_scores(
    model: Any,
    samples: Sequence[Sample],
    image_size: tuple[int, int],
    bits: int = DEFAULT_SOURCE_BITS,
    batch_size: int = 8,
    roi: TrainingRoi | None = None,
    *,
    value_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """(N,) float64 scores of training ``samples`` by the whole trained bank (from the fit's
    embeddings where kept), masked to ``roi`` as ``out_of_fold_scores`` are."""
    own, images = _scoring_inputs(model, samples, image_size, bits, value_range)
    indices = np.arange(len(samples))
    spec = roi.spec if roi is not None else None
    return score_images(
        model.model, indices, images, own, image_size=image_size, batch_size=batch_size, roi=spec
    )


def _scoring_inputs(
    model: Any,
    samples: Sequence[Sample],
    image_size: tuple[int, int],
    bits: int,
    value_range: tuple[float, float] | None,
) -> tuple[list[torch.Tensor] | None, torch.Tensor | None]:
    """The fit's embeddings of ``samples`` (None unless it kept them all) and their pre-processed
    images (None when only embeddings are needed: only a fused statistics part reads pixels)."""
    own = fit_embeddings(model, samples)
    head = getattr(model.model, "local_stats", None)
    fused = head is not None and head.enabled
    needed = fused or own is None
    images = model_inputs(model, samples, image_size, bits, value_range) if needed else None
    return own, images


def model_inputs(
    model: Any,
    samples: Sequence[Sample],
    image_size: tuple[int, int],
    bits: int = DEFAULT_SOURCE_BITS,
    value_range: tuple[float, float] | None = None,
) -> torch.Tensor:
    """(N, 3, H, W) float32: the samples through the model's pre-processor."""
    dataset = SampleDataset(samples, image_size, bits, value_range)
    with torch.no_grad():
        images = torch.stack([dataset[i].image for i in range(len(dataset))])
        return model.pre_processor(images)


def fold_banks(
    rows: Sequence[torch.Tensor],
    assignment: np.ndarray,
    ratio: float,
    cap_rows: int | None,
    seed: int,
    *,
    budget_bytes: int | None = None,
) -> list[torch.Tensor]:
    """Every fold's bank from the other folds' rows, selected as the trained bank is (seeded
    ``seed + fold``), so a held-out fold scores as a new good part does. Below the rows budget a
    fold's bank is one coreset of the others' rows (a union of per-fold coresets is sparser and
    lifts every score); past it the trained bank is a union of group coresets, so each fold's is
    selected once and a fold's bank is the others' union, cut to the cap."""
    folds = range(int(assignment.max()) + 1)
    if budget_bytes is not None:
        cores = []
        for fold in folds:
            seed_selection(seed + fold)
            own = [rows[i] for i in np.flatnonzero(assignment == fold)]
            cores.append(grouped_coreset_rows(own, ratio, cap_rows, budget_bytes))
        return [_union(cores[:fold] + cores[fold + 1 :], cap_rows, seed + fold) for fold in folds]
    draws = threading.Lock()

    def bank(fold: int) -> torch.Tensor:
        others = torch.cat([rows[i] for i in np.flatnonzero(assignment != fold)])
        with draws:
            seed_selection(seed + fold)
            features, k, start = prepare_selection(others, ratio, cap_rows)
        return others[greedy_k_center(features, k, start=start).indices].float().contiguous()

    with threads(1), ThreadPoolExecutor(2) as pool:
        return list(pool.map(bank, folds))


def _union(cores: list[torch.Tensor], cap_rows: int | None, seed: int) -> torch.Tensor:
    """The union of group coresets, cut to ``cap_rows`` as ``grouped_coreset_rows`` cuts it."""
    union = torch.cat(cores)
    if cap_rows is None or len(union) <= cap_rows:
        return union
    seed_selection(seed)
    return union[select_coreset(union, 1.0, cap_rows).indices].contiguous()


def _local_stats_fold_banks(
    inner: Any,
    images: torch.Tensor,
    samples: Sequence[Sample],
    roi: TrainingRoi | None,
    batch_size: int,
    assignment: np.ndarray,
    selection: tuple[float, int | None, int],
) -> list[torch.Tensor]:
    """Per fold, its local-statistics bank ([] without one): those its fit selected on the same
    folds, else ``fold_banks`` of the z-scored cells."""
    head = getattr(inner, "local_stats", None)
    if head is None or not head.enabled:
        return []
    if len(head.fold_banks) == int(assignment.max()) + 1:
        return head.fold_banks
    side = per_image_rows(head.rows, images, batch_size, roi, [s.path for s in samples])
    return fold_banks(side, assignment, *selection)


def fit_embeddings(model: Any, samples: Sequence[Sample]) -> list[torch.Tensor] | None:
    """Per image, its (h * w, d) patch embedding as the fit collected it (before the ROI, without
    ``bank_augment`` views); None when the fit did not see every sample."""
    kept = getattr(model, "train_rows", {})
    if not samples or not all(str(s.path) in kept for s in samples):
        return None
    views = 1 + len(getattr(model, "bank_augment", ()))
    return [(rows := kept[str(s.path)])[: len(rows) // views] for s in samples]


def score_images(
    inner: Any,
    indices: np.ndarray,
    images: torch.Tensor | None,
    embeddings: Sequence[torch.Tensor] | None,
    *,
    image_size: Sequence[int],
    batch_size: int = 8,
    roi: RoiSpec | None = None,
) -> np.ndarray:
    """(len(indices),) float64 image scores of ``inner`` as it stands, masked to ``roi``; from the
    fit's ``embeddings`` when given, else from the pre-processed ``images`` (N, 3, H, W)."""
    height, width = image_size
    inner.eval()
    scores = []
    with torch.no_grad(), channels_last(inner):
        for start in range(0, len(indices), batch_size):
            batch = indices[start : start + batch_size]
            if embeddings is None:
                output = inner(images[batch])
            else:
                pixels = images[batch] if images is not None else torch.zeros(1, 3, height, width)
                pixels = pixels.expand(len(batch), -1, -1, -1)
                with replayed_embeddings(inner, [embeddings[i] for i in batch], (height, width)):
                    output = inner(pixels)
            batch_scores = output.pred_score.reshape(-1).double().numpy()
            if roi is not None:
                maps = output.anomaly_map.reshape(len(batch), *output.anomaly_map.shape[-2:])
                batch_scores, _ = apply_roi_batch(batch_scores, maps.float().numpy(), roi)
            scores.append(batch_scores)
    return np.concatenate(scores)


class _NoFeatures(torch.nn.Module):
    def forward(self, _images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}


@contextmanager
def replayed_embeddings(
    inner: Any, rows: Sequence[torch.Tensor], image_size: Sequence[int]
) -> Iterator[None]:
    """Inside, ``inner``'s forward takes the batch's patch embedding from ``rows`` (per image,
    (h * w, d) in ``reshape_embedding``'s order) instead of running its backbone."""
    count, dim = rows[0].shape
    height = round(math.sqrt(count * image_size[0] / image_size[1]))
    width = count // height
    if height * width != count:
        raise ValueError(f"{count} patch rows are no grid of a {list(image_size)} input")
    embedding = torch.stack(list(rows)).float().reshape(len(rows), height, width, dim)
    extractor = inner.feature_extractor
    inner.feature_extractor = _NoFeatures()
    inner.generate_embedding = lambda _features: embedding.permute(0, 3, 1, 2)
    try:
        yield
    finally:
        inner.feature_extractor = extractor
        del inner.generate_embedding


def _fit_rows(
    model: Any, samples: Sequence[Sample], roi: TrainingRoi | None, size: Sequence[int]
) -> list[torch.Tensor]:
    """Per image, the patch rows its fit collected (views included), ROI applied."""
    kept = model.train_rows
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
