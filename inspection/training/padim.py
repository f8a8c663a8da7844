"""Out-of-fold PaDiM scores of the training images: good calibration scores for PaDiM.

A PaDiM model scores its own training images low (each shaped the Gaussians), and only the
good validation images are left to set the threshold: on ``part`` 18 of them, whose largest
score let 7 of 42 held-out good parts through as NG (``reports/padim``). As for PatchCore
(``training.out_of_fold``), the N training images are split into the same seeded folds; each
fold is scored by Gaussians fitted on the other folds' embeddings (anomalib's
``MultiVariateGaussian``, the same 0.01 ridge), through the trained model's own anomaly-map
head. The embeddings are computed once; a fold costs one Gaussian fit (one D x D inverse per
grid cell) and one Mahalanobis pass. Fewer images per Gaussian than the trained model's: if
anything a little high, a conservative threshold.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from inspection.data.dataset import Sample
from inspection.training.out_of_fold import fold_of, model_inputs

logger = logging.getLogger(__name__)


def padim_out_of_fold_scores(
    model: Any,
    samples: Sequence[Sample],
    *,
    folds: int,
    image_size: tuple[int, int],
    seed: int = 0,
    batch_size: int = 8,
) -> np.ndarray:
    """(N,) float64 raw image scores of ``samples`` (the training images), each from Gaussians
    fitted without its fold. ``model``: the trained anomalib ``Padim`` (left unchanged)."""
    from anomalib.models.components import MultiVariateGaussian

    inner = model.model
    embeddings = padim_embeddings(inner, model_inputs(model, samples, image_size), batch_size)
    assignment = fold_of(len(samples), folds, seed)
    scores = np.empty(len(samples), dtype=np.float64)
    for fold in range(folds):
        gaussian = MultiVariateGaussian()
        with torch.no_grad():
            gaussian.fit(embeddings[torch.from_numpy(assignment != fold)])
        held = np.flatnonzero(assignment == fold)
        scores[held] = padim_scores(inner, embeddings[held], gaussian, image_size)
    logger.info("out-of-fold PaDiM scores of %d training images (%d folds)", len(samples), folds)
    return scores


def padim_embeddings(inner: Any, images: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """(N, D, h, w) float32 embeddings of (N, 3, H, W) model inputs, as training collects them."""
    chunks = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            features = inner.feature_extractor(images[start : start + batch_size])
            chunks.append(inner.generate_embedding(features))
    return torch.cat(chunks)


def padim_scores(
    inner: Any, embeddings: torch.Tensor, gaussian: Any, image_size: tuple[int, int]
) -> np.ndarray:
    """(N,) float64 image scores (map maximum) of (N, D, h, w) ``embeddings`` under
    ``gaussian`` (its ``mean`` (D, h*w) and ``inv_covariance`` (h*w, D, D)), through the
    model's anomaly-map head (distance, upsampling to ``image_size``, blur)."""
    with torch.no_grad():
        amap = inner.anomaly_map_generator(
            embedding=embeddings,
            mean=gaussian.mean,
            inv_covariance=gaussian.inv_covariance,
            image_size=tuple(image_size),
        )
    return torch.amax(amap, dim=(-3, -2, -1)).double().numpy()
