"""Fit the global-context model (``inspection.core.global_context``) on normal images.

Gaussians use scikit-learn's Ledoit-Wolf shrinkage (few normal images, many dimensions);
standardisers use the good images of the validation split only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.covariance import LedoitWolf

from inspection.core.bundle import Preprocessing
from inspection.core.global_context import (
    FEATURES,
    IMAGE_STATISTICS,
    LOCAL,
    PARAMS_FILE,
    Gaussian,
    GlobalContext,
    Standardiser,
    fuse,
    images_of_input,
)
from inspection.core.images import read_image
from inspection.core.metrics import image_auroc
from inspection.runtime.preprocess import preprocess

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


# ------------------------------------------------------------------ trained models
CONTEXT_FILE = PARAMS_FILE
FUSION_RULE = (
    "max of z-scores (local and global components, standardised on good validation images)"
)


@dataclass(frozen=True)
class ModelOutputs:
    """Outputs of the export wrapper on N images: local raw scores (N,), pooled features
    (N, D) and the images as the model saw them ((h, w, 3) float32 in [0, 1])."""

    local_raw: np.ndarray
    pooled: np.ndarray
    images: list[np.ndarray]


def model_outputs(
    torch_model: Any,
    paths: Sequence[Path],
    prep: Preprocessing,
    layers: Sequence[str],
    batch_size: int = 8,
) -> ModelOutputs:
    """Run the exact graph the bundle exports (score, map, pooled) on station-preprocessed images."""
    import torch

    from inspection.training.export import _no_chunking, _ScoreAndMap

    wrapper = _ScoreAndMap.wrap(torch_model.eval(), layers)
    scores, pooled, images = [], [], []
    with _no_chunking(), torch.no_grad():
        for start in range(0, len(paths), batch_size):
            batch = np.stack(
                [preprocess(read_image(p), prep) for p in paths[start : start + batch_size]]
            )
            score, _, features = wrapper(torch.from_numpy(batch))
            scores.append(score.numpy().astype(np.float64))
            pooled.append(features.numpy().astype(np.float64))
            images.extend(images_of_input(batch, prep))
    return ModelOutputs(np.concatenate(scores), np.concatenate(pooled), images)


def fused_scores(
    context: GlobalContext, outputs: ModelOutputs
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Fused raw scores (N,) and every component's z-scores for ``outputs``."""
    distances = context.distances(images=outputs.images, pooled=outputs.pooled)
    z = context.z_scores(distances, local_raw=outputs.local_raw)
    fused, _ = fuse(z)
    return fused, z


@dataclass(frozen=True)
class FittedContext:
    context: GlobalContext
    normalization: dict[str, float]
    """The model's normalisation with the image fields in fused-score space."""
    validation_auroc: dict[str, float]
    """Validation image AUROC of each component alone and fused (the selection evidence)."""


def fit_model_context(
    torch_model: Any,
    components: Sequence[str],
    layers: Sequence[str],
    prep: Preprocessing,
    train_paths: Sequence[Path],
    validation: Sequence[Any],
    normalization: Mapping[str, float],
) -> FittedContext:
    """Fit the global context of a trained model; re-derive the image threshold and min/max
    in fused space on the validation split (F1-optimal threshold, like anomalib's)."""
    train = model_outputs(torch_model, train_paths, prep, layers)
    val = model_outputs(torch_model, [s.path for s in validation], prep, layers)
    labels = np.asarray([s.label for s in validation], dtype=int)
    good = labels == 0
    context = fit_global_context(
        components,
        train.images,
        [image for image, ok in zip(val.images, good, strict=True) if ok],
        train_pooled=train.pooled,
        validation_pooled=val.pooled[good],
        feature_layers=layers,
        validation_local_raw=val.local_raw[good],
    )
    fused, z = fused_scores(context, val)
    aurocs = {name: image_auroc(values, labels) for name, values in {**z, "fused": fused}.items()}
    stats = {
        **normalization,
        "image_threshold_raw": f1_threshold(fused, labels),
        "image_min": float(fused.min()),
        "image_max": float(fused.max()),
    }
    return FittedContext(
        context, stats, {k: round(v, 4) for k, v in aurocs.items() if v is not None}
    )


def f1_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The score threshold with the best F1 on (scores, labels)."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(labels, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1[:-1]))])
