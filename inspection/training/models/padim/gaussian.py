"""PaDiM's per-cell Gaussians (``covariance`` estimator) and out-of-fold calibration scores.

``PadimGaussian`` is anomalib's ``MultiVariateGaussian`` with ``ridge`` (anomalib's) or
scikit-learn's ``ledoit_wolf`` / ``oas`` shrinkage. As for PatchCore, each seeded fold of
training images is scored by Gaussians fitted on the other folds (its own images score low).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from anomalib.models.components import MultiVariateGaussian
from sklearn.covariance import OAS, LedoitWolf
from threadpoolctl import threadpool_limits  # a scikit-learn dependency

from inspection.core.product_config import COVARIANCE_ESTIMATORS, ModelConfig
from inspection.data.dataset import Sample
from inspection.training.models.common import Stages
from inspection.training.models.patchcore.out_of_fold import fold_of, model_inputs
from inspection.training.roi import TrainingRoi

logger = logging.getLogger(__name__)

# scikit-learn estimators per ``covariance`` value other than anomalib's ``ridge``
SHRINKAGE: dict[str, type[LedoitWolf] | type[OAS]] = {"ledoit_wolf": LedoitWolf, "oas": OAS}


class PadimGaussian(MultiVariateGaussian):
    """anomalib's per-cell Gaussian (buffers ``mean`` (D, h*w) and ``inv_covariance``
    (h*w, D, D), float32) with the covariance from ``covariance`` (``COVARIANCE_ESTIMATORS``)."""

    def __init__(self, covariance: str = "ridge") -> None:
        super().__init__()
        if covariance not in COVARIANCE_ESTIMATORS:
            valid = ", ".join(COVARIANCE_ESTIMATORS)
            raise ValueError(f"unknown covariance estimator {covariance!r}; valid: {valid}")
        self.covariance = covariance

    def forward(self, embedding: torch.Tensor) -> list[torch.Tensor]:
        """Fit to (N, D, h, w) float32 embeddings; returns [mean, inv_covariance]."""
        if self.covariance == "ridge":
            return super().forward(embedding)
        self.mean, self.inv_covariance = shrunk_gaussian(embedding, self.covariance)
        return [self.mean, self.inv_covariance]


def shrunk_gaussian(embedding: torch.Tensor, covariance: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D, h*w) and inverse covariance (h*w, D, D), float32, of (N, D, h, w) embeddings,
    per cell in float64 on one BLAS thread (threaded BLAS is slower on such small products)."""
    estimator = SHRINKAGE[covariance]
    n, dims, height, width = embedding.shape
    cells = embedding.detach().reshape(n, dims, height * width).permute(2, 0, 1).double()
    with threadpool_limits(limits=1, user_api="blas"):
        fitted = [estimator(store_precision=False).fit(c) for c in cells.contiguous().numpy()]
    mean = torch.from_numpy(np.stack([f.location_ for f in fitted], axis=1)).float()
    shrunk = torch.from_numpy(np.stack([f.covariance_ for f in fitted]))
    return mean.contiguous(), torch.linalg.inv(shrunk).float()


def out_of_fold_scores(
    model: Any,
    config: ModelConfig,
    samples: Sequence[Sample],
    roi: TrainingRoi | None = None,
    stages: Stages = None,
) -> np.ndarray:
    """(N,) float64 raw scores of the whole training ``samples`` (``roi``, ``stages`` unused), each
    from Gaussians fitted without its fold with the served estimator; ``model`` is unchanged."""
    inner = model.model
    covariance = served_covariance(inner)
    folds, image_size = config.calibration_folds, config.image_size
    inputs = model_inputs(model, samples, image_size, config.image_bits, config.image_range)
    embeddings = padim_embeddings(inner, inputs, config.batch_size)
    assignment = fold_of(len(samples), folds, config.seed)
    scores = np.empty(len(samples), dtype=np.float64)
    for fold in range(folds):
        gaussian = PadimGaussian(covariance)
        with torch.no_grad():
            gaussian.fit(embeddings[torch.from_numpy(assignment != fold)])
        held = np.flatnonzero(assignment == fold)
        scores[held] = padim_scores(inner, embeddings[held], gaussian, image_size)
    logger.info(
        "out-of-fold PaDiM scores of %d training images (%d folds, %s covariance)",
        len(samples), folds, covariance,
    )  # fmt: skip
    return scores


def served_covariance(inner: Any) -> str:
    """The covariance estimator of a PaDiM torch model's Gaussians."""
    gaussian = inner.gaussian
    if not isinstance(gaussian, PadimGaussian):
        raise RuntimeError(
            "this PaDiM model's Gaussians are anomalib's own; build it with "
            "training.models.build_model so its covariance estimator is known"
        )
    return gaussian.covariance


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
    """(N,) float64 map-maximum scores of (N, D, h, w) ``embeddings`` under ``gaussian``."""
    with torch.no_grad():
        amap = inner.anomaly_map_generator(
            embedding=embeddings,
            mean=gaussian.mean,
            inv_covariance=gaussian.inv_covariance,
            image_size=tuple(image_size),
        )
    return torch.amax(amap, dim=(-3, -2, -1)).double().numpy()
