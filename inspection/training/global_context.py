"""Fit the global-context model (``inspection.core.global_context``) on normal images.

Gaussians use scikit-learn's Ledoit-Wolf shrinkage (few normal images, many dimensions);
standardisers use the good images of the validation split only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.covariance import LedoitWolf

from inspection.core.global_context import (
    FEATURES,
    IMAGE_STATISTICS,
    LOCAL,
    Gaussian,
    GlobalContext,
    Standardiser,
    pool_features,
)

MIN_STD = 1e-6


def fit_gaussian(vectors: np.ndarray) -> Gaussian:
    """Mean and Ledoit-Wolf shrunk precision of (N, D) normal vectors (N >= 2)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.ndim != 2 or len(vectors) < 2:
        raise ValueError(f"need (N >= 2, D) vectors of normal images, got {vectors.shape}")
    estimator = LedoitWolf().fit(vectors)
    return Gaussian(estimator.location_.copy(), estimator.precision_.copy())


def fit_standardiser(values: np.ndarray) -> Standardiser:
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size < 2:
        raise ValueError(f"need at least 2 good validation images, got {values.size}")
    return Standardiser(float(values.mean()), max(float(values.std(ddof=1)), MIN_STD))


def image_vectors(images: Sequence[np.ndarray], component: str) -> np.ndarray:
    """(N, D) statistics of ``component`` (colour or frequency) of (H, W, 3) uint8 images."""
    return np.stack([IMAGE_STATISTICS[component](image) for image in images])


def fit_global_context(
    components: Sequence[str],
    train_images: Sequence[np.ndarray],
    validation_good_images: Sequence[np.ndarray],
    *,
    train_pooled: np.ndarray | None = None,
    validation_pooled: np.ndarray | None = None,
    feature_layers: Sequence[str] = (),
    validation_local_raw: np.ndarray | None = None,
) -> GlobalContext:
    """Fit each component on the training (normal) images, standardise on good validation ones.

    ``*_pooled``: (N, D) pooled backbone features of the same images (for ``features``);
    ``validation_local_raw``: the local model's raw scores of the good validation images.
    """
    gaussians: dict[str, Gaussian] = {}
    standardisers: dict[str, Standardiser] = {}
    for name in components:
        if name == FEATURES:
            if train_pooled is None or validation_pooled is None:
                raise ValueError("the features component needs pooled train/validation features")
            train_vectors, val_vectors = train_pooled, validation_pooled
        elif name in IMAGE_STATISTICS:
            train_vectors = image_vectors(train_images, name)
            val_vectors = image_vectors(validation_good_images, name)
        else:
            raise ValueError(
                f"unknown component {name!r}; valid: {FEATURES}, {list(IMAGE_STATISTICS)}"
            )
        gaussians[name] = fit_gaussian(train_vectors)
        standardisers[name] = fit_standardiser(gaussians[name].distance(val_vectors))
    if validation_local_raw is not None:
        standardisers[LOCAL] = fit_standardiser(validation_local_raw)
    return GlobalContext(gaussians, standardisers, tuple(feature_layers))


def pooled_backbone_features(
    extractor: Any, batches: Sequence[np.ndarray], layers: Sequence[str]
) -> np.ndarray:
    """Run a torch feature extractor (returns {layer: (N, C, h, w)}) on normalised NCHW
    float32 batches; pooled features (N, sum C) in ``layers`` order."""
    import torch

    pooled = []
    with torch.no_grad():
        for batch in batches:
            maps: Mapping[str, Any] = extractor(torch.from_numpy(np.ascontiguousarray(batch)))
            pooled.append(pool_features([maps[layer].numpy() for layer in layers]))
    return np.concatenate(pooled)
