"""Train an anomalib model on an ``inspection.data`` Dataset and register a version.

A version holds ``model.pt`` (rebuilt from ``record.config`` by ``load_trained_model``), the
resolved config, dataset fingerprint, backbone weights, and in ``record.extra`` what an exported
bundle needs (preprocessing, normalisation, splits).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import resource
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning
import numpy as np
import torch
from anomalib.data import ImageBatch
from torch.utils.data import DataLoader

from inspection.core.bundle import GlobalContextSpec, Preprocessing
from inspection.core.calibration import Normalization
from inspection.core.config import to_mapping
from inspection.core.errors import DatasetError
from inspection.core.fingerprint import package_versions, relative_name
from inspection.core.global_context import GlobalContext
from inspection.core.metrics import EvaluationMetrics
from inspection.core.model_record import DataSplits, FitFigures, ModelRecord
from inspection.core.operating_point import validation_count
from inspection.core.product_config import ModelConfig, model_config_from_mapping
from inspection.core.registry import Registry
from inspection.core.roi import RoiSpec, RoiTraining
from inspection.data.dataset import MIN_TEST_GOOD, NEEDS_TEST_GOOD, Dataset, Sample
from inspection.data.decoded import KEPT
from inspection.data.leaks import PRINTS_FILE, TrainPrints, pixel_print
from inspection.training.backbones import (
    ResolvedWeights,
    in_process,
    resolve_weights,
)
from inspection.training.evaluate import metrics_of_predictions, predict
from inspection.training.global_context import (
    CONTEXT_FILE,
    FUSION_RULE,
    FittedContext,
    TrainOutOfFold,
    fit_model_context,
    fused_scores,
    model_outputs,
)
from inspection.training.models import build_model, model_kind
from inspection.training.models.common import Stages
from inspection.training.models.mixed import fit_for_model as fit_supervised
from inspection.training.models.mixed import supervised_config
from inspection.training.models.patchcore.image_score import BlurChoice, choose_blur
from inspection.training.models.patchcore.local_stats import LocalStatsChoice
from inspection.training.operating import (
    TrainGoodScores,
    calibrate_predictions,
    calibration_good_scores,
    good_score_record,
    held_aside_scores,
)
from inspection.training.roi import TrainingRoi, masked_predictions
from inspection.training.samples import Predictions, SampleDataset, decoded_image
from inspection.training.shared_features import shared_backbone

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "model.pt"
PACKAGES = ("torch", "torchvision", "anomalib", "lightning", "timm", "openvino", "nncf", "numpy")


def split_validation(
    samples: Sequence[Sample], fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """Split test samples into (validation, test), stratified by defect type, seeded: each
    type gives ``core.operating_point.validation_count`` of its images to validation."""
    if fraction <= 0:
        return [], list(samples)
    rng = np.random.default_rng(seed)
    validation: set[Path] = set()
    for defect in sorted({s.defect_type for s in samples}):
        group = sorted((s for s in samples if s.defect_type == defect), key=lambda s: str(s.path))
        for index in rng.permutation(len(group))[: validation_count(len(group), fraction)]:
            validation.add(group[index].path)
    return (
        [s for s in samples if s.path in validation],
        [s for s in samples if s.path not in validation],
    )


def evaluation_splits(config: ModelConfig, dataset: Dataset) -> tuple[list[Sample], list[Sample]]:
    """The (validation, test) samples a model trained with ``config`` uses."""
    test = list(dataset.test_samples)
    if not dataset.train_samples:
        raise DatasetError(f"dataset {dataset.name!r} has no training images (train/good)")
    if (good := sum(s.label == 0 for s in test)) < MIN_TEST_GOOD:
        raise DatasetError(f"dataset {dataset.name!r}: test/good has {good}: {NEEDS_TEST_GOOD}")
    if not any(s.label == 1 for s in test):
        logger.warning(
            "%s has no defect images: good-only calibration, miss rates unknown", dataset.name
        )
    validation, held_out = split_validation(test, config.val_fraction, config.seed)
    if not validation:
        logger.warning("val_fraction is 0: thresholds are set on the test images (optimistic F1)")
        validation = held_out
    return validation, held_out


def make_loader(
    samples: Sequence[Sample], config: ModelConfig, *, shuffle: bool = False
) -> DataLoader:
    return DataLoader(
        SampleDataset(samples, config.image_size, config.image_bits, config.image_range),
        batch_size=config.batch_size,
        shuffle=shuffle,
        num_workers=config.num_workers,
        collate_fn=ImageBatch.collate,
        generator=torch.Generator().manual_seed(config.seed),
    )


def config_weights(config: ModelConfig) -> ResolvedWeights:
    """The backbone weights ``config`` names (``resolve_weights``)."""
    backbone = config.backbone
    return resolve_weights(backbone.name, backbone.weights, backbone.weights_file)


def load_trained_model(record: ModelRecord) -> Any:
    """Rebuild the anomalib model of ``record`` from ``model.pt`` (no download), in eval mode."""
    config = model_config_from_mapping(record.config, where=f"{record.model_version} config")
    prep = record.preprocessing()
    weights = ResolvedWeights(
        config.backbone.name, "random", "restored from checkpoint", prep.mean, prep.std
    )
    model = build_model(config, weights)
    state = torch.load(record.file(CHECKPOINT_FILE), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


class StageClock:
    """Wall seconds and peak RSS per named stage of one training run (logged)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.peak_gb: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + now - self._last, 2)
        self.peak_gb[stage] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2)
        self._last = now

    def log(self) -> None:
        logger.info("train stages: %s", json.dumps(self.seconds))
        logger.info("train peak RSS GB: %s", json.dumps(self.peak_gb))


@dataclass
class TrainOutcome:
    """What ``train_model`` produced: the record plus in-memory results for reports."""

    record: ModelRecord
    model: Any
    predictions: Any  # inspection.training.evaluate.Predictions on the held-out test split
    metrics: EvaluationMetrics
    clock: StageClock = field(default_factory=StageClock)


def train(
    config: ModelConfig,
    dataset: Dataset,
    *,
    product: str,
    registry: Registry,
    progress: bool = True,
    roi: RoiSpec | None = None,
) -> ModelRecord:
    """Fit, evaluate on the held-out test split and register an immutable version."""
    return train_model(
        config, dataset, product=product, registry=registry, progress=progress, roi=roi
    ).record


@KEPT.held()  # each image decoded once for the fit, the scores and the evaluation
def train_model(
    config: ModelConfig,
    dataset: Dataset,
    *,
    product: str,
    registry: Registry,
    progress: bool = True,
    lineage: Mapping[str, Any] | None = None,
    roi: RoiSpec | None = None,
    stages: Stages = None,
) -> TrainOutcome:
    """``train`` that also returns the model and test predictions. ``lineage``: record entries
    on how the config was chosen; ``stages``: told how the long stages advance."""
    clock = StageClock()
    gate = config.supervised == "auto"  # auto: the head is kept only where it helps
    config = supervised_config(config, dataset)
    validation, test = evaluation_splits(config, dataset)
    fingerprint = dataset.fingerprint()
    weights = config_weights(config)
    masks = None if roi is None else TrainingRoi.whole_image(roi, tuple(config.image_size))
    model, fit_seconds = fit(
        config, dataset.train_samples, validation, weights, progress=progress, roi=masks,
        stages=stages,
    )  # fmt: skip
    clock.lap("fit")
    with shared_backbone(model):  # validation images: one backbone and PatchCore pass
        supervised = fit_supervised(model, config, dataset, validation, masks, gate=gate)
        clock.lap("supervised")
        local_stats = _fit_local_statistics(model, config, dataset.train_samples, validation, masks)
        clock.lap("local_statistics")
        validated, blur = predict_validation(model, config, validation)
        validated = masked_predictions(validated, roi)  # as the ROI bundle scores
        clock.lap("validation")
    good_scores = calibration_good_scores(model, config, dataset.train_samples, masks, stages)
    model.train_rows = {}  # the fit's rows served the out-of-fold scores: free them
    clock.lap("out_of_fold")
    held_aside = held_aside_scores(model, config, dataset.calibration_samples, roi, stages)
    clock.lap("calibration_images")
    calibration = calibrate_predictions(validated, config.operating_point, good_scores, held_aside)
    normalization = calibration.normalization
    clock.lap("calibration")
    predictions = predict(
        model, test, image_size=config.image_size, bits=config.image_bits,
        value_range=config.image_range,
    )  # fmt: skip
    predictions = masked_predictions(predictions, roi)
    context = None
    if config.global_context:
        context, normalization, predictions = _fit_global_context(
            model, config, weights, dataset.train_samples, validation, predictions, normalization,
            good_scores, [s.path for s in dataset.calibration_samples],
        )  # fmt: skip
        if context.context.components:  # fused scores: the threshold was chosen on them
            calibration = dataclasses.replace(  # the local good scores did not set it
                calibration, normalization=normalization, operating=context.operating,
                good_scores=(), good_weights=(),
            )  # fmt: skip
    metrics = metrics_of_predictions(predictions, calibration)
    clock.lap("evaluation")
    set_post_processor(model, normalization)
    fitted = context.context if context is not None and context.context.components else None
    prints = train_prints(dataset, config)
    clock.lap("train_prints")

    def save(directory: Path) -> None:
        prints.save(directory / PRINTS_FILE)
        if fitted is not None:
            fitted.save(directory / CONTEXT_FILE)

    figures = FitFigures(fit_seconds=round(fit_seconds, 2), test_images=len(test))
    record = register_version(
        registry, product, model, dataset, save, fingerprint, model_kind=config.kind,
        config=to_mapping(config), weights=weights.record(),
        metrics={**metrics.to_mapping(), **figures.to_mapping()},
        extra={
            **version_extra(config, weights, dataset, (validation, test), calibration),
            "good_scores": to_mapping(
                good_score_record(
                    dataset, good_scores, validated, config.calibration_folds, held_aside
                )
            ),
            "map_resolution": list(config.image_size),
            **({"global_context": _context_record(context)} if context else {}),
            **({"local_statistics": to_mapping(local_stats)} if local_stats else {}),
            **({"image_score": to_mapping(blur)} if blur else {}),
            **({"supervised": to_mapping(supervised)} if supervised else {}),
            **training_roi_extra(roi, masks, model),
            **dict(lineage or {}),
        },
    )  # fmt: skip
    logger.info("registered %s (%s)", record.model_version, config.kind)
    clock.lap("registry")
    return TrainOutcome(record, model, predictions, metrics, clock)


def _fit_local_statistics(
    model: Any,
    config: ModelConfig,
    train_samples: Sequence[Sample],
    validation: Sequence[Sample],
    roi: TrainingRoi | None,
) -> LocalStatsChoice | None:
    """Fit the fused local-statistics model where the kind has one and the config asks."""
    fit_local = model_kind(config.kind).fit_local_statistics
    if fit_local is None or config.local_statistics_mode == "off":
        return None
    started = time.perf_counter()
    choice = fit_local(model, config, train_samples, validation, roi)
    logger.info("local statistics fitted in %.1f s", time.perf_counter() - started)
    return choice


def predict_validation(
    model: Any, config: ModelConfig, validation: Sequence[Sample]
) -> tuple[Predictions, BlurChoice | None]:
    """Predictions on the validation split, with a ``map_peak`` model's blur chosen on them."""
    validated = predict(
        model, validation, image_size=config.image_size, bits=config.image_bits,
        value_range=config.image_range,
    )  # fmt: skip
    head = getattr(model.model, "map_peak", None)
    if head is None:
        return validated, None
    maps = torch.from_numpy(validated.maps).unsqueeze(1)
    side = min(config.image_size)
    choice = choose_blur(head, maps, validated.labels, config.image_score_blur, side)
    with torch.no_grad():
        scores = torch.cat([head.peaks(batch) for batch in maps.split(16)])
    return dataclasses.replace(validated, scores=scores.float().numpy()), choice


def _fit_global_context(
    model: Any,
    config: ModelConfig,
    weights: ResolvedWeights,
    train_samples: Sequence[Sample],
    validation: Sequence[Sample],
    predictions: Any,
    normalization: Normalization,
    good_scores: TrainGoodScores | None = None,
    calibration: Sequence[Path] = (),
) -> tuple[FittedContext, Normalization, Any]:
    """Fit the global context; test predictions get fused scores (maps stay local) when a
    component was kept, the fused threshold set with the out-of-fold ``good_scores``."""
    fitted = fit_model_context(
        model.model, config.global_context, config.backbone.layers,
        station_preprocessing(config, weights), [s.path for s in train_samples], validation,
        to_mapping(normalization), config.operating_point, _context_out_of_fold(good_scores),
        calibration,
    )  # fmt: skip
    if not fitted.context.components:
        logger.info("global context: no component helped on validation; the model stays local")
        return fitted, normalization, predictions
    fused_stats = {
        k: fitted.normalization[k] for k in ("image_threshold_raw", "image_min", "image_max")
    }
    fused_normalization = dataclasses.replace(normalization, **fused_stats)
    fused = fused_predictions(model, config, weights, fitted.context, predictions)
    return fitted, fused_normalization, fused


def fused_predictions(
    model: Any,
    config: ModelConfig,
    weights: ResolvedWeights,
    context: GlobalContext,
    predictions: Predictions,
) -> Predictions:
    """``predictions`` with the global ``context``'s fused image scores (maps stay local)."""
    prep = station_preprocessing(config, weights)
    paths = [Path(p) for p in predictions.paths]
    fused, _ = fused_scores(
        context, model_outputs(model.model, paths, prep, config.backbone.layers)
    )
    return dataclasses.replace(predictions, scores=fused.astype(np.float32))


def _context_out_of_fold(good: TrainGoodScores | None) -> TrainOutOfFold | None:
    """The calibrating out-of-fold scores for the fused threshold (none through an ROI)."""
    if good is None or good.roi_masked:
        return None
    return TrainOutOfFold(np.flatnonzero(good.calibrates), good.out_of_fold[good.calibrates])


def _context_record(fitted: FittedContext) -> dict[str, Any]:
    context = fitted.context
    return to_mapping(GlobalContextSpec(
        components=context.components, layers=context.feature_layers, file=CONTEXT_FILE,
        fusion=FUSION_RULE, validation_auroc=dict(fitted.validation_auroc),
        candidates=fitted.candidates,
    ))  # fmt: skip


def station_preprocessing(config: ModelConfig, weights: ResolvedWeights) -> Preprocessing:
    """The preprocessing an exported bundle applies (as recorded in ``extra.preprocessing``)."""
    return Preprocessing(
        input_size=tuple(config.image_size), mean=tuple(weights.mean), std=tuple(weights.std),
        resize="bilinear", source_bits=config.image_bits, source_range=config.image_range,
    )  # fmt: skip


def fit(
    config: ModelConfig,
    train_samples: Sequence[Sample],
    validation: Sequence[Sample],
    weights: ResolvedWeights,
    *,
    progress: bool = True,
    roi: TrainingRoi | None = None,
    prepare: Callable[[Any], None] | None = None,
    stages: Stages = None,
) -> tuple[Any, float]:
    """``fit_loaders`` on ``train_samples``, without a validation loop (calibration follows)."""
    train_loader = make_loader(train_samples, config, shuffle=True)
    return fit_loaders(config, weights, train_loader, None, progress, roi, prepare, stages)


def fit_loaders(
    config: ModelConfig,
    weights: ResolvedWeights,
    train_loader: DataLoader,
    validation_loader: DataLoader | None,
    progress: bool = True,
    roi: TrainingRoi | None = None,
    prepare: Callable[[Any], None] | None = None,
    stages: Stages = None,
) -> tuple[Any, float]:
    """Seeded CPU fit of whole images or tiles; returns (model in eval mode, seconds).
    ``roi``: the items' input masks; ``prepare``: called on the built model first."""
    lightning.seed_everything(config.seed, workers=True, verbose=False)
    torch.use_deterministic_algorithms(True, warn_only=True)
    model = build_model(config, weights)
    in_process(model.model)  # the trained model's in-process predictions, not its export
    model.training_roi = roi
    model.expected_images = len(train_loader.dataset)  # PatchCore: rows within its budget?
    if prepare is not None:
        prepare(model)
    fit_kind = model_kind(config.kind).fit
    seconds = fit_kind(model, config, train_loader, validation_loader, progress, stages)
    model.training_roi = None  # training only: a trained model carries no masks
    return model.eval(), seconds


def training_roi_extra(
    roi: RoiSpec | None, masks: TrainingRoi | None, model: Any, **tiles: int
) -> dict[str, Any]:
    """``{"training_roi": ...}`` for a version's record (``core.roi.RoiTraining``), or {}."""
    if roi is None or masks is None:
        return {}
    seen = getattr(model, "patches_seen", 0)
    kept = getattr(model, "patches_kept", None) if seen else None
    record = RoiTraining(roi, round(masks.inside_fraction(), 4), patches_kept=kept,
                         patches_total=seen or None, **tiles)  # fmt: skip
    logger.info("training ROI: %s", record.describe())
    return {"training_roi": to_mapping(record)}


def set_post_processor(model: Any, norm: Normalization) -> None:
    """Keep ``model.pt``'s post-processor consistent with the recorded normalisation."""
    values = {"_image_threshold": norm.image_threshold_raw,
              "_pixel_threshold": norm.pixel_threshold_raw}  # fmt: skip
    for name in ("image_min", "image_max", "pixel_min", "pixel_max"):
        values[name] = getattr(norm, name)
    for name, value in values.items():
        getattr(model.post_processor, name).fill_(float(value))


def register_version(
    registry: Registry,
    product: str,
    model: Any,
    dataset: Dataset,
    save: Callable[[Path], None] | None = None,
    fingerprint: Mapping[str, Any] | None = None,
    **record: Any,
) -> ModelRecord:
    """Register ``model``'s state dict as a new version of ``product`` with ``dataset``'s
    fingerprint and the ``create_version`` entries ``record``; ``save`` writes further files."""
    state = model.state_dict()
    fingerprint = fingerprint or dataset.fingerprint()

    def write_files(directory: Path) -> None:
        torch.save(state, directory / CHECKPOINT_FILE)
        if save is not None:
            save(directory)

    dataset_entry = {**fingerprint, "root": str(dataset.root)}
    packages = package_versions(PACKAGES, "not installed")
    return registry.bundles.create_version(product, dataset=dataset_entry, packages=packages,
                                   write_files=write_files, **record)  # fmt: skip


def version_extra(
    config: ModelConfig,
    weights: ResolvedWeights,
    dataset: Dataset,
    splits: tuple[Sequence[Sample], Sequence[Sample]],
    calibration: Any,
) -> dict[str, Any]:
    """The ``extra`` every trained version records (preprocessing, calibration, splits)."""
    return {
        "preprocessing": to_mapping(station_preprocessing(config, weights)),
        "normalization": to_mapping(calibration.normalization),
        "segmentation": to_mapping(calibration.segmentation),
        "splits": to_mapping(DataSplits(*(_names(dataset, samples) for samples in splits))),
        "train_images": len(dataset.train_samples),
    }


def train_prints(dataset: Dataset, config: ModelConfig) -> TrainPrints:
    """``pixel_print`` of each training image by its name under ``dataset.root``, decoded as
    ``config`` reads it (inside ``train_model``: of the fit's decodings, ``KEPT``)."""
    reading = (config.image_bits, config.image_range)

    def print_of(path: Path) -> np.ndarray:
        kept = KEPT.print_of(path, *reading)
        return kept if kept is not None else pixel_print(decoded_image(path, *reading))

    return TrainPrints.of(
        {relative_name(s.path, dataset.root): print_of(s.path) for s in dataset.train_samples}
    )


def _names(dataset: Dataset, samples: Sequence[Sample]) -> tuple[str, ...]:
    return tuple(sorted(relative_name(s.path, dataset.root) for s in samples))
