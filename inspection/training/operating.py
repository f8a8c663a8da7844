"""Training's side of the operating point: good calibration scores and the calibration.

Out-of-fold scores of the training images and the model's scores of the good calibration images
(never trained on) join the good validation scores that set the threshold; the registry keeps
them for each exported bundle to carry into its own score space. A model fusing local
statistics calibrates only on the folds its standardisers did not see.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inspection.core.calibration import Calibration, calibrate
from inspection.core.fingerprint import relative_name
from inspection.core.model_record import GoodScores
from inspection.core.operating_point import OperatingPoint, extra_good_scores
from inspection.core.product_config import ModelConfig
from inspection.core.roi import RoiSpec
from inspection.data.dataset import Dataset, Sample
from inspection.training.evaluate import predict
from inspection.training.models import model_kind
from inspection.training.models.patchcore.local_stats import standardiser_images
from inspection.training.models.patchcore.out_of_fold import trained_scores
from inspection.training.roi import TrainingRoi, masked_predictions
from inspection.training.samples import Predictions

logger = logging.getLogger(__name__)
FULL_BANK_IMAGES = 32
"""Training images also scored by the trained model, to pair torch and bundle scores."""
CALIBRATION_CHUNK = 64
"""Calibration images predicted at once (their maps are dropped after each chunk)."""


@dataclass(frozen=True)
class TrainGoodScores:
    """Raw torch scores of training images: out-of-fold (N,) and by the full bank (M,);
    ``calibrates`` / ``validation_calibrates``: which may set the threshold (not those that fitted
    a fusion's standardisers); ``roi_masked``: scored through the ROI."""

    samples: tuple[Sample, ...]
    out_of_fold: np.ndarray
    full_bank_samples: tuple[Sample, ...]
    full_bank: np.ndarray
    folds: int
    calibrates: np.ndarray
    validation_calibrates: bool = True
    roi_masked: bool = False


def calibration_good_scores(
    model: Any,
    config: ModelConfig,
    train: Sequence[Sample],
    roi: TrainingRoi | None,
    stages: Callable[[str, int, int], None] | None = None,
) -> TrainGoodScores | None:
    """Out-of-fold scores of ``train`` (None without any, or with ``calibration_folds`` 0)."""
    folds = config.calibration_folds
    kind = model_kind(config.kind)
    if kind.out_of_fold_scores is None or folds < 2:
        return None
    if len(train) < 2 * folds:
        logger.warning("only %d training images: no out-of-fold scores", len(train))
        return None
    scores = kind.out_of_fold_scores(model, config, train, roi, stages)
    paired = tuple(sorted(train, key=lambda s: str(s.path))[:FULL_BANK_IMAGES])
    full = trained_scores(
        model, paired, config.image_size, config.image_bits, config.batch_size, roi=roi,
        value_range=config.image_range,
    )  # fmt: skip
    heads = (getattr(model.model, name, None) for name in ("local_stats", "supervised"))
    fused = any(head is not None and head.enabled for head in heads)  # fitted on good images
    scaling = standardiser_images(len(train), folds, config.seed) if fused else None
    calibrates = np.ones(len(train), bool) if scaling is None else ~scaling
    masked = kind.out_of_fold_sees_roi and roi is not None and roi.spec is not None
    return TrainGoodScores(tuple(train), scores, paired, full, folds, calibrates, not fused, masked)


def held_aside_scores(
    model: Any,
    config: ModelConfig,
    samples: Sequence[Sample],
    roi: RoiSpec | None,
    stages: Callable[[str, int, int], None] | None = None,
) -> np.ndarray:
    """(N,) raw scores of the good calibration ``samples``, masked to ``roi``, chunk by chunk."""
    scores = [np.empty(0, np.float32)]
    for start in range(0, len(samples), CALIBRATION_CHUNK):
        chunk = samples[start : start + CALIBRATION_CHUNK]
        predicted = predict(
            model, chunk, image_size=config.image_size, batch_size=config.batch_size,
            bits=config.image_bits, value_range=config.image_range,
        )  # fmt: skip
        scores.append(masked_predictions(predicted, roi).scores)
        if stages is not None:
            stages("scoring the calibration images", start + len(chunk), len(samples))
    return np.concatenate(scores).astype(np.float64)


def calibrate_predictions(
    validation: Predictions,
    point: OperatingPoint,
    good: TrainGoodScores | None,
    held_aside: np.ndarray | None = None,
) -> Calibration:
    """The calibration ``point`` sets on validation predictions, the ``held_aside`` scores and,
    while those are too few (``pools_out_of_fold``), the out-of-fold scores that may calibrate."""
    with_validation = good is None or good.validation_calibrates
    n_validation = int((validation.labels == 0).sum()) if with_validation else None
    out_of_fold = None if good is None else good.out_of_fold[good.calibrates]
    extra, _, sources = extra_good_scores(point.budget, n_validation, held_aside, out_of_fold)
    calibration = calibrate(
        validation.scores, validation.maps, validation.labels, validation.masks,
        validation.defect_types, mask_known=validation.mask_known, point=point,
        extra_good_scores=extra, good_sources=sources, validation_good=with_validation,
    )  # fmt: skip
    if calibration.operating is not None:
        logger.info("operating point: %s", calibration.operating.describe())
    return calibration


def good_score_record(
    dataset: Dataset,
    good: TrainGoodScores | None,
    validation: Predictions,
    folds: int,
    held_aside: np.ndarray | None = None,
) -> GoodScores:
    """The registry's ``good_scores`` entry (paths relative to the dataset root): the calibrating
    out-of-fold scores and the ``held_aside`` scores of the calibration images."""

    def rel(path: str | Path) -> str:
        return relative_name(path, dataset.root)

    val = {
        rel(p): round(float(s), 6) for p, s in zip(validation.paths, validation.scores, strict=True)
    }
    aside = zip(dataset.calibration_samples, () if held_aside is None else held_aside, strict=True)
    calibration = {rel(s.path): round(float(v), 6) for s, v in aside}
    if good is None:
        return GoodScores(validation=val, calibration=calibration)
    calibrating = zip(good.samples, good.out_of_fold, good.calibrates, strict=True)
    return GoodScores(
        out_of_fold={rel(s.path): round(float(v), 6) for s, v, keep in calibrating if keep},
        validation=val,
        train_full_bank={rel(s.path): round(float(v), 6) for s, v in zip(good.full_bank_samples, good.full_bank, strict=True)},
        folds=folds,
        validation_calibrates=good.validation_calibrates,
        roi_masked=good.roi_masked,
        calibration=calibration,
    )  # fmt: skip
