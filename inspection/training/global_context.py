"""Fit the global-context model (``inspection.core.global_context``) on normal images.

Each component's Gaussian is fitted with Ledoit-Wolf shrinkage; its scale comes from
out-of-fold distances (scored on its own images it would be over-tight). ``select_components``
keeps, by greedy forward selection on validation AUROC, components adding ``MIN_GAIN``;
``context_threshold`` sets the operating point on good images the model has not seen.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.covariance import LedoitWolf

from inspection.core.bundle import Preprocessing
from inspection.core.global_context import (
    FEATURES,
    LOCAL,
    PARAMS_FILE,
    Gaussian,
    GlobalContext,
    Standardiser,
    component_vectors,
    fuse,
    images_of_input,
)
from inspection.core.images import read_image
from inspection.core.metrics import image_auroc
from inspection.core.operating_point import (
    OperatingPoint,
    ThresholdChoice,
    choose_threshold,
    extra_good_scores,
)
from inspection.runtime.preprocess import model_batch
from inspection.training.convert import no_chunking, score_and_map

MIN_STD = 1e-6
FOLDS = 5
MIN_GAIN = 0.01
"""Validation image AUROC a global component must add to be kept."""


def fit_gaussian(vectors: np.ndarray) -> Gaussian:
    """Mean and Ledoit-Wolf shrunk precision of (N, D) normal vectors (N >= 2)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.ndim != 2 or len(vectors) < 2:
        raise ValueError(f"need (N >= 2, D) vectors of normal images, got {vectors.shape}")
    estimator = LedoitWolf().fit(vectors)
    return Gaussian(estimator.location_.copy(), estimator.precision_.copy())


def out_of_fold_distances(vectors: np.ndarray, folds: int = FOLDS) -> np.ndarray:
    """(N,) Mahalanobis distance of each (N, D) vector under a Gaussian fitted without its fold."""
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.ndim != 2 or len(vectors) < 4:
        raise ValueError(f"need (N >= 4, D) vectors of normal images, got {vectors.shape}")
    folds = min(folds, len(vectors) // 2)
    order = np.random.default_rng(0).permutation(len(vectors))
    distances = np.empty(len(vectors), dtype=np.float64)
    for held in np.array_split(order, folds):
        rest = np.setdiff1d(order, held)
        distances[held] = fit_gaussian(vectors[rest]).distance(vectors[held])
    return distances


@dataclass(frozen=True)
class TrainOutOfFold:
    """The local model's out-of-fold raw scores of the training images ``rows``."""

    rows: np.ndarray
    local_raw: np.ndarray


def out_of_fold_fused(
    context: GlobalContext, vectors: Mapping[str, np.ndarray], train: TrainOutOfFold
) -> np.ndarray:
    """Fused scores of training images as unseen good parts: each kept component's and the
    local model's out-of-fold scores, standardised and fused as the station fuses them."""
    distances = {
        name: out_of_fold_distances(vectors[name])[train.rows] for name in context.components
    }
    return fuse(context.z_scores(distances, local_raw=train.local_raw))[0]


def fit_standardiser(values: np.ndarray) -> Standardiser:
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size < 2:
        raise ValueError(f"need at least 2 good images to standardise, got {values.size}")
    return Standardiser(float(values.mean()), max(float(values.std(ddof=1)), MIN_STD))


def fit_global_context(
    components: Sequence[str],
    train_images: Sequence[np.ndarray],
    *,
    train_pooled: np.ndarray | None = None,
    feature_layers: Sequence[str] = (),
    validation_local_raw: np.ndarray | None = None,
) -> GlobalContext:
    """Fit each component on the training images, standardised on out-of-fold distances."""
    gaussians: dict[str, Gaussian] = {}
    standardisers: dict[str, Standardiser] = {}
    for name, vectors in component_vectors(components, train_images, train_pooled).items():
        gaussians[name] = fit_gaussian(vectors)
        standardisers[name] = fit_standardiser(out_of_fold_distances(vectors))
    if validation_local_raw is not None:
        standardisers[LOCAL] = fit_standardiser(validation_local_raw)
    layers = tuple(feature_layers) if FEATURES in gaussians else ()
    return GlobalContext(gaussians, standardisers, layers)


@dataclass(frozen=True)
class Selection:
    """The components kept by ``select_components`` and the validation evidence."""

    kept: tuple[str, ...]
    validation_auroc: dict[str, float]
    """Image AUROC of each component alone, of every accepted step (``+name``) and ``fused``."""


def select_components(z_scores: Mapping[str, np.ndarray], labels: np.ndarray) -> Selection:
    """Greedy forward selection of global components on validation z-scores (which must hold
    ``local``); ties and gains below ``MIN_GAIN`` keep the smaller set."""
    if LOCAL not in z_scores:
        raise ValueError("select_components needs the local z-scores")

    def fused_auroc(names: Sequence[str]) -> float:
        fused, _ = fuse({name: z_scores[name] for name in names})
        return float(image_auroc(fused, labels) or 0.0)

    evidence = {name: round(fused_auroc([name]), 4) for name in z_scores}
    kept, best = [LOCAL], fused_auroc([LOCAL])
    remaining = [name for name in z_scores if name != LOCAL]
    while remaining:
        gains = {name: fused_auroc([*kept, name]) - best for name in remaining}
        name = max(gains, key=lambda k: gains[k])
        if gains[name] < MIN_GAIN:
            break
        kept.append(name)
        remaining.remove(name)
        best += gains[name]
        evidence[f"+{name}"] = round(best, 4)
    evidence["fused"] = round(best, 4)
    return Selection(tuple(kept[1:]), evidence)


def restrict(context: GlobalContext, kept: Sequence[str]) -> GlobalContext:
    """``context`` with only the ``kept`` global components (``local`` standardiser stays)."""
    names = {*kept, LOCAL}
    return GlobalContext(
        {k: v for k, v in context.gaussians.items() if k in kept},
        {k: v for k, v in context.standardisers.items() if k in names},
        context.feature_layers if FEATURES in kept else (),
    )


def refit_on_outputs(
    context: GlobalContext, train_pooled: np.ndarray | None, validation_good_local: np.ndarray
) -> GlobalContext:
    """``context`` with the ``features`` Gaussian and scale re-fitted on a bundle's own
    ``train_pooled`` (N, D) and the local scale on its good validation scores (a quantised graph's
    features shift; colour and frequency stay)."""
    gaussians = dict(context.gaussians)
    standardisers = dict(context.standardisers)
    if FEATURES in gaussians:
        if train_pooled is None:
            raise ValueError("the features component needs the bundle's pooled train features")
        gaussians[FEATURES] = fit_gaussian(train_pooled)
        standardisers[FEATURES] = fit_standardiser(out_of_fold_distances(train_pooled))
    standardisers[LOCAL] = fit_standardiser(validation_good_local)
    return GlobalContext(gaussians, standardisers, context.feature_layers)


# ------------------------------------------------------------------ trained models
CONTEXT_FILE = PARAMS_FILE
FUSION_RULE = (
    "max of z-scores over local and the global components kept by greedy forward selection "
    f"on validation image AUROC (kept only if it adds >= {MIN_GAIN}); global components "
    f"standardised on {FOLDS}-fold out-of-fold train distances, local on good validation images"
)


@dataclass(frozen=True)
class ModelOutputs:
    """Export-graph outputs on N images: local raw scores (N,), pooled (N, D), images seen."""

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
    """Run the exact graph the bundle exports (score, map, pooled) on station-preprocessed images
    (in Python: the torch graph takes normalised (N, 3, h, w) float32, whatever ``prep`` says)."""
    # deferred: torch (2 s), only for a torch model's outputs
    import torch

    prep = replace(prep, in_graph=False)

    wrapper = score_and_map(torch_model.eval(), layers)

    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        score, *rest = wrapper(torch.from_numpy(batch))
        return score.numpy(), rest[1].numpy() if layers else None

    with no_chunking(), torch.no_grad():
        return batched_outputs(run, paths, prep, batch_size)


def batched_outputs(
    run: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]],
    paths: Sequence[Path],
    prep: Preprocessing,
    batch_size: int = 8,
    *,
    images: bool = True,
) -> ModelOutputs:
    """``run`` over ``paths`` in station-preprocessed batches (images kept with ``images``)."""
    scores, pooled, seen = [], [], []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        decoded = [
            read_image(p, bits=prep.source_bits, value_range=prep.source_range) for p in chunk
        ]
        batch = model_batch(decoded, prep)
        score, features = run(batch)
        scores.append(np.asarray(score, np.float64))
        features = np.zeros((len(batch), 0)) if features is None else features
        pooled.append(features.astype(np.float64))
        if images:
            seen.extend(images_of_input(batch, prep))
    return ModelOutputs(np.concatenate(scores), np.concatenate(pooled), seen)


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
    """Only the kept components (none: the model stays local)."""
    candidates: tuple[str, ...]
    normalization: dict[str, float]
    """The model's normalisation with the image fields in fused-score space."""
    validation_auroc: dict[str, float]
    """Validation image AUROC of each component alone, the accepted steps and fused."""
    operating: ThresholdChoice
    """How the fused image threshold (``normalization["image_threshold_raw"]``) was chosen."""


def fit_model_context(
    torch_model: Any,
    components: Sequence[str],
    layers: Sequence[str],
    prep: Preprocessing,
    train_paths: Sequence[Path],
    validation: Sequence[Any],
    normalization: Mapping[str, float],
    point: OperatingPoint | None = None,
    train_out_of_fold: TrainOutOfFold | None = None,
    calibration_paths: Sequence[Path] = (),
) -> FittedContext:
    """Fit a trained model's global context, keep the components that help, re-derive thresholds."""
    train = model_outputs(torch_model, train_paths, prep, layers)
    val = model_outputs(torch_model, [s.path for s in validation], prep, layers)
    labels = np.asarray([s.label for s in validation], dtype=int)
    every = fit_global_context(
        components, train.images, train_pooled=train.pooled, feature_layers=layers,
        validation_local_raw=val.local_raw[labels == 0],
    )  # fmt: skip
    selection = select_components(fused_scores(every, val)[1], labels)
    context = restrict(every, selection.kept)
    fused, _ = fused_scores(context, val)
    train_good = None
    if train_out_of_fold is not None and context.components:
        vectors = component_vectors(context.components, train.images, train.pooled)
        train_good = out_of_fold_fused(context, vectors, train_out_of_fold)
    held_aside = None
    if calibration_paths and context.components:
        held_aside = fused_scores(
            context, model_outputs(torch_model, calibration_paths, prep, layers)
        )[0]
    choice = context_threshold(fused, labels, point or OperatingPoint(), train_good, held_aside)
    fused_range = {"image_min": float(fused.min()), "image_max": float(fused.max())}
    stats = {**normalization, "image_threshold_raw": choice.threshold, **fused_range}
    return FittedContext(context, tuple(components), stats, selection.validation_auroc, choice)


def context_threshold(
    fused: np.ndarray,
    labels: np.ndarray,
    point: OperatingPoint,
    train_good: np.ndarray | None = None,
    held_aside: np.ndarray | None = None,
) -> ThresholdChoice:
    """The threshold ``point`` sets on fused validation scores, the calibration images'
    ``held_aside`` and, while those are too few, the out-of-fold fused ``train_good``."""
    good = fused[labels == 0]
    extra, _, sources = extra_good_scores(point.budget, len(good), held_aside, train_good)
    good = np.r_[good, extra]
    return choose_threshold(good, point, defect_scores=fused[labels == 1], good_sources=sources)
