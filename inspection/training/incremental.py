"""Incremental PatchCore update: add new good images' patches to a registered memory bank.

``update_bank`` embeds the NEW images only, appends their k-center picks of what the bank does
not cover (``extend_bank``), re-calibrates as a full training does and registers a new version
with its ``Lineage``. Out-of-fold scores: the parent's, and the new images' as the parent scores
them; a bank only grows, so these bound the child's own from above (fewer false rejects).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inspection.core.calibration import Calibration
from inspection.core.config import to_mapping
from inspection.core.errors import ConfigError, DatasetError, RegistryError
from inspection.core.fingerprint import path_of, relative_name, sha256_file, shown_name
from inspection.core.model_record import ADDED_DIR, FitFigures, GoodScores, Lineage, ModelRecord
from inspection.core.product_config import ModelConfig, model_config_from_mapping
from inspection.core.registry import Registry
from inspection.core.roi import RoiSpec, RoiTraining
from inspection.core.types import Progress
from inspection.data.dataset import GOOD, Dataset, Sample, load_dataset
from inspection.data.leaks import (
    PRINTS_FILE,
    TrainPrints,
    held_out_copies,
    prints_of,
    refuse_held_out,
)
from inspection.training.augment import views
from inspection.training.backbones import channels_last
from inspection.training.evaluate import metrics_of_predictions, predict
from inspection.training.models import model_kind
from inspection.training.models.patchcore.coreset import (
    all_cores,
    coreset_size,
    greedy_k_center,
    project,
    select_coreset,
)
from inspection.training.models.patchcore.out_of_fold import model_inputs, trained_scores
from inspection.training.operating import (
    TrainGoodScores,
    calibrate_predictions,
    good_score_record,
    held_aside_scores,
)
from inspection.training.roi import TrainingRoi, per_image_rows
from inspection.training.samples import Predictions
from inspection.training.train import (
    CHECKPOINT_FILE,
    load_trained_model,
    make_loader,
    register_version,
    set_post_processor,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UpdateOutcome:
    """The new version, its lineage, test figures and seconds until it was registered."""

    record: ModelRecord
    lineage: Lineage
    metrics: dict[str, Any]
    predictions: Predictions
    seconds: float


def update_bank(
    registry: Registry,
    product: str,
    images: Sequence[Path],
    *,
    version: str | None = None,
    dataset: Dataset | None = None,
    progress: Progress | None = None,
) -> UpdateOutcome:
    """Add ``images`` (good parts) to a PatchCore version's bank as a new version; ``version``:
    the parent (default: latest), ``dataset``: where its recorded split lives."""
    say = progress or (lambda message: log.info("%s", message))
    started = time.perf_counter()
    stages: dict[str, float] = {}
    parent = registry.bundles.version(product, version)
    config = _check_parent(parent)
    images = _check_images(images)
    point = config.operating_point
    with _timed(stages, "load"):
        dataset = dataset or load_dataset(parent.dataset_root())
        validation, test = _recorded_splits(parent, dataset)
        held_out = [s.path for s in (*validation, *test)]
        prints = prints_of(images, config.image_bits, config.image_range)  # each decoded once
        refuse_held_out(prints, held_out, bits=config.image_bits, value_range=config.image_range)
        digests = _check_unseen(registry, parent, dataset, images, prints, config)
        model = load_trained_model(parent)
    say(f"extracting patches of {len(images)} new images")
    with _timed(stages, "extract"):
        trained = parent.training_roi()
        roi = None if trained is None else trained.roi
        new = _embeddings(model, images, config, roi)
        unseen = _parent_scores(model, parent, images, config, roi)
    bank = model.model.memory_bank
    say(f"selecting new patches ({new.shape[0]} candidates, bank of {bank.shape[0]})")
    with _timed(stages, "select"):
        model.model.memory_bank = extend_bank(
            bank, new, config.coreset_sampling_ratio, config.memory_bank_max
        )
    _extend_local_statistics(model, images, config, trained)
    say(f"re-calibrating at its {point.describe()}")
    with _timed(stages, "calibrate"):
        v = predict(
            model, validation, image_size=config.image_size, bits=config.image_bits,
            value_range=config.image_range,
        )  # fmt: skip
        held_aside = held_aside_scores(model, config, dataset.calibration_samples, roi)
        good = _child_good_scores(model, parent, dataset, images, unseen, config, roi)
        calibration = calibrate_predictions(v, point, good, held_aside)
        set_post_processor(model, calibration.normalization)
        scores = _good_score_record(parent, dataset, good, v, held_aside, images, digests)
    say(f"measuring on {len(test)} test images")
    with _timed(stages, "evaluate"):
        predictions = predict(
            model, test, image_size=config.image_size, bits=config.image_bits,
            value_range=config.image_range,
        )  # fmt: skip
        metrics = metrics_of_predictions(predictions, calibration).to_mapping()
    rows_after = int(model.model.memory_bank.shape[0])
    lineage = Lineage(
        parent=parent.version, method="incremental", added_images=len(images),
        added_digests=digests,
        added_patches=rows_after - int(bank.shape[0]), bank_rows_before=int(bank.shape[0]),
        bank_rows_after=rows_after,
    )  # fmt: skip
    # the recorded fit time leaves out the registration; ``seconds`` below includes it
    fit = FitFigures(fit_seconds=round(time.perf_counter() - started, 2), test_images=len(test))
    metrics |= replace(fit, update_stage_seconds=stages).to_mapping()
    record = _register(
        registry, parent, model, dataset, lineage, (calibration, scores), metrics, images
    )
    seconds = time.perf_counter() - started
    say(f"registered {record.model_version} (from {parent.version}, +{len(images)} images)")
    return UpdateOutcome(record, lineage, metrics, predictions, seconds)


@contextmanager
def _timed(stages: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        stages[name] = round(time.perf_counter() - started, 2)


def extend_bank(
    bank: torch.Tensor, new: torch.Tensor, ratio: float, cap_rows: int | None
) -> torch.Tensor:
    """(m, d) bank plus ``int(n * ratio)`` greedy k-center picks of (n, d) ``new`` rows in one
    projection of both (the bank counts as chosen); both reduced together past ``cap_rows``."""
    if bank.ndim != 2 or new.ndim != 2 or bank.shape[1] != new.shape[1]:
        raise ValueError(
            f"bank (m, d) and new (n, d) must share d, got {tuple(bank.shape)}, {tuple(new.shape)}"
        )
    k = coreset_size(new.shape[0], ratio)
    with torch.no_grad(), all_cores():
        projected = project(torch.cat([bank, new]))
        old, fresh = projected[: bank.shape[0]], projected[bank.shape[0] :]
        min_sq = _nearest_sq(fresh, old)
        picks = greedy_k_center(fresh, min(k, fresh.shape[0]), start=None, min_sq=min_sq)
    merged = torch.cat([bank, new[picks.indices]]).contiguous()
    if cap_rows is not None and merged.shape[0] > cap_rows:
        merged = merged[select_coreset(merged, 1.0, cap_rows).indices].contiguous()
    return merged


def _nearest_sq(rows: torch.Tensor, centers: torch.Tensor, block_rows: int = 4096) -> torch.Tensor:
    """(n,) squared distance of each row to its nearest center (+inf with no centers)."""
    if centers.shape[0] == 0:
        return torch.full((rows.shape[0],), float("inf"))
    parts = [
        torch.cdist(rows[i : i + block_rows], centers).min(dim=1).values.square()
        for i in range(0, rows.shape[0], block_rows)
    ]
    return torch.cat(parts)


def _check_parent(parent: ModelRecord) -> ModelConfig:
    if not model_kind(parent.model_kind).memory_bank:
        raise ConfigError(
            f"{parent.model_version} is a {parent.model_kind} model: only PatchCore memory banks "
            "can be updated incrementally; retrain it with `inspection train`"
        )
    if parent.global_context() is not None:
        raise ConfigError(
            f"{parent.model_version} has a global-context component fitted on all training "
            "images: update it with a full `inspection train`"
        )
    if parent.tiling() is not None:
        raise ConfigError(
            f"{parent.model_version} was trained on tiles: update it with a full `inspection train`"
        )
    if parent.config.get("supervised") is True:
        raise ConfigError(
            f"{parent.model_version} is a mixed model: its head learned the bank's distances, "
            "which new bank rows would shift; update it with a full `inspection train`"
        )
    if CHECKPOINT_FILE not in parent.files:
        raise RegistryError(f"{parent.model_version} has no {CHECKPOINT_FILE} to update")
    return model_config_from_mapping(parent.config, where=f"{parent.model_version} config")


def _check_images(images: Sequence[Path]) -> list[Path]:
    paths = [Path(p) for p in images]
    if not paths:
        raise DatasetError("no new images to add: give good images (--images DIR or --reviewed)")
    missing = [shown_name(p) for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(f"images not found: {', '.join(missing[:5])}")
    return paths


def _check_unseen(
    registry: Registry,
    parent: ModelRecord,
    dataset: Dataset,
    images: Sequence[Path],
    prints: Mapping[Path, np.ndarray],
    config: ModelConfig,
) -> tuple[str, ...]:
    """The sha256 of each new image; ``DatasetError`` naming those already in the parent's bank:
    its training images by decoded pixels (a renamed or re-saved copy: ``data.leaks``, read as
    ``config`` reads them; ``prints``: the new images' ``prints_of``) and earlier updates'
    images by file."""
    recorded: dict[str, str] = parent.dataset.get("files") or {}
    trained = {
        s.path: rel for s in dataset.train_samples
        if (rel := relative_name(s.path, dataset.root)) in recorded
    }  # fmt: skip
    added = _added_digests(registry, parent)
    digests = tuple(sha256_file(p) for p in images)
    banked = {path: added[d] for path, d in zip(images, digests, strict=True) if d in added}
    reading = {"bits": config.image_bits, "value_range": config.image_range}
    copies = held_out_copies(
        {path: print_ for path, print_ in prints.items() if path not in banked},
        _trained_prints(parent, trained, reading),
        **reading,
    )
    banked |= {path: trained[match] for path, match in copies.items()}
    seen = [f"{path} is already in the bank ({banked[path]})" for path in images if path in banked]
    if seen:
        raise DatasetError(
            f"{len(seen)} of the new images are not new to {parent.model_version}: "
            f"{'; '.join(seen[:5])}{' ...' if len(seen) > 5 else ''}. Add good parts it has "
            "never seen"
        )
    return digests


def _trained_prints(
    parent: ModelRecord, trained: Mapping[Path, str], reading: Mapping[str, Any]
) -> dict[Path, np.ndarray]:
    """``pixel_print`` of each of ``trained`` (path -> name under the dataset root) as ``parent``
    recorded it (``PRINTS_FILE``); one it did not record (a version recorded before training
    kept prints) decoded by ``reading`` (``prints_of``'s bits, value range)."""
    recorded = (
        TrainPrints.load(parent.file(PRINTS_FILE)).by_name() if PRINTS_FILE in parent.files else {}
    )
    decoded = prints_of([path for path, name in trained.items() if name not in recorded], **reading)
    return {
        path: recorded[name] if name in recorded else decoded[path]
        for path, name in trained.items()
        if name in recorded or path in decoded
    }


def _added_digests(registry: Registry, record: ModelRecord) -> dict[str, str]:
    """sha256 -> "added in vNNNN" of every image the updates up to ``record`` added."""
    added: dict[str, str] = {}
    while (lineage := record.lineage()) is not None and lineage.method == "incremental":
        added |= dict.fromkeys(lineage.added_digests, f"added in {record.version}")
        record = registry.bundles.version(record.product, lineage.parent)
    return added


def _recorded_splits(parent: ModelRecord, dataset: Dataset) -> tuple[list[Sample], list[Sample]]:
    """The parent's (validation, test) samples, matched in ``dataset`` by relative path."""
    splits = parent.splits()
    if not splits.validation or not splits.test:
        raise RegistryError(
            f"{parent.model_version} records no validation/test split; retrain it in full"
        )
    # every sample: a product without test/ holds a fifth of train/good out, and images added
    # since may have moved one of the parent's held-out images to the training side
    by_rel = {relative_name(s.path, dataset.root): s for s in dataset.samples}
    missing = [rel for rel in (*splits.validation, *splits.test) if rel not in by_rel]
    if missing:
        raise DatasetError(
            f"{len(missing)} images of {parent.model_version}'s validation/test split are not in "
            f"{dataset.root} (e.g. {missing[0]}); give the dataset it was trained on"
        )
    return [by_rel[r] for r in splits.validation], [by_rel[r] for r in splits.test]


def _scoring_roi(
    parent: ModelRecord, config: ModelConfig, roi: RoiSpec | None
) -> TrainingRoi | None:
    """The masks the parent's out-of-fold scores were taken through (None: whole images)."""
    if roi is None or not parent.good_scores().roi_masked:
        return None
    return TrainingRoi.whole_image(roi, tuple(config.image_size))


def _scores(
    model: Any, paths: Sequence[Path], config: ModelConfig, masks: TrainingRoi | None
) -> np.ndarray:
    """(N,) scores of good ``paths`` by ``model``'s whole bank, as out-of-fold scores are taken."""
    samples = [Sample(p, "train", 0, GOOD) for p in paths]
    size = tuple(config.image_size)
    return trained_scores(
        model, samples, size, config.image_bits, config.batch_size, masks,
        value_range=config.image_range,
    )  # fmt: skip


def _parent_scores(
    model: Any,
    parent: ModelRecord,
    images: Sequence[Path],
    config: ModelConfig,
    roi: RoiSpec | None,
) -> np.ndarray | None:
    """(N,) the new ``images``' out-of-fold scores: the parent's (None: it records none)."""
    if not parent.good_scores().out_of_fold:
        return None
    return _scores(model, images, config, _scoring_roi(parent, config, roi))


def _child_good_scores(
    model: Any,
    parent: ModelRecord,
    dataset: Dataset,
    images: Sequence[Path],
    unseen: np.ndarray | None,
    config: ModelConfig,
    roi: RoiSpec | None,
) -> TrainGoodScores | None:
    """The updated ``model``'s calibrating good scores: the parent's out-of-fold and the new images'
    ``unseen`` ones, and its own of the parent's full-bank images (None: the parent has none)."""
    recorded = parent.good_scores()
    if unseen is None:
        return None
    masks = _scoring_roi(parent, config, roi)
    paired = [path_of(dataset.root, name) for name in sorted(recorded.train_full_bank)]
    names = [path_of(dataset.root, name) for name in recorded.out_of_fold]
    scores = np.r_[np.fromiter(recorded.out_of_fold.values(), float), unseen]
    return TrainGoodScores(
        samples=tuple(Sample(p, "train", 0, GOOD) for p in (*names, *images)),
        out_of_fold=scores,
        full_bank_samples=tuple(Sample(p, "train", 0, GOOD) for p in paired),
        full_bank=_scores(model, paired, config, masks) if paired else np.empty(0),
        folds=recorded.folds,
        calibrates=np.ones(scores.size, bool),
        validation_calibrates=recorded.validation_calibrates,
        roi_masked=recorded.roi_masked,
    )


def _good_score_record(
    parent: ModelRecord,
    dataset: Dataset,
    good: TrainGoodScores | None,
    validation: Predictions,
    held_aside: np.ndarray,
    images: Sequence[Path],
    digests: Sequence[str],
) -> GoodScores:
    """The child's ``good_scores``: its own validation, calibration and full-bank scores, the
    parent's out-of-fold ones and the new images' (named ``added/<sha256><suffix>``)."""
    recorded = parent.good_scores()
    own = good_score_record(dataset, None, validation, recorded.folds, held_aside)
    if good is None:
        return replace(recorded, validation=own.validation, calibration=own.calibration)
    added = zip(images, digests, good.out_of_fold[len(recorded.out_of_fold) :], strict=True)
    return replace(
        recorded,
        out_of_fold=recorded.out_of_fold
        | {f"{ADDED_DIR}/{d}{p.suffix.lower()}": round(float(v), 6) for p, d, v in added},
        validation=own.validation,
        calibration=own.calibration,
        train_full_bank={
            relative_name(s.path, dataset.root): round(float(v), 6)
            for s, v in zip(good.full_bank_samples, good.full_bank, strict=True)
        },
    )


def _embeddings(
    model: Any, images: Sequence[Path], config: ModelConfig, roi: RoiSpec | None = None
) -> torch.Tensor:
    """(patches, channels) embeddings of ``images`` as the training epoch takes them."""
    samples = [Sample(p, "train", 0, GOOD) for p in images]
    masks = None if roi is None else TrainingRoi.whole_image(roi, tuple(config.image_size))
    model.model.train()  # the backbone stays in eval mode (anomalib's extractor sees to it)
    store = model.model.embedding_store
    store.clear()
    try:
        with torch.no_grad(), channels_last(model.model):
            for batch in make_loader(samples, config):
                image = model.pre_processor(batch.image)
                embedding = model.model(image)
                if masks is not None:
                    size = tuple(batch.image.shape[-2:])
                    store[-1] = embedding[masks.keep_rows(batch.image_path, embedding, size)]
                for view in views(image, config.bank_augment if masks is None else ()):
                    model.model(view)  # the parent's bank holds its training images' views
        return torch.vstack(store)
    finally:
        store.clear()
        model.model.eval()


def _extend_local_statistics(
    model: Any, images: Sequence[Path], config: ModelConfig, trained: RoiTraining | None
) -> None:
    """Extend a fused local-statistics bank with the new images' cells, as the PatchCore bank."""
    head = getattr(model.model, "local_stats", None)
    if head is None or not head.enabled:
        return

    size = tuple(config.image_size)
    samples = [Sample(p, "train", 0, GOOD) for p in images]
    inputs = model_inputs(model, samples, size, config.image_bits, config.image_range)
    masks = None if trained is None else TrainingRoi.whole_image(trained.roi, size)
    rows = per_image_rows(head.rows, inputs, config.batch_size, masks, [str(p) for p in images])
    new = torch.cat(rows).contiguous()
    head.bank = extend_bank(head.bank, new, config.coreset_sampling_ratio, config.memory_bank_max)


def _register(
    registry: Registry,
    parent: ModelRecord,
    model: Any,
    dataset: Dataset,
    lineage: Lineage,
    calibrated: tuple[Calibration, GoodScores],
    metrics: dict[str, Any],
    images: Sequence[Path],
) -> ModelRecord:
    """The new version, keeping a copy of each added image (``ADDED_DIR``) for later retrains
    and the parent's ``PRINTS_FILE``; ``calibrated``: its calibration and good scores."""
    calibration, scores = calibrated

    def keep_added(directory: Path) -> None:
        if PRINTS_FILE in parent.files:  # the parent's training images are the child's too
            shutil.copyfile(parent.file(PRINTS_FILE), directory / PRINTS_FILE)
        (directory / ADDED_DIR).mkdir()
        for path, digest in zip(images, lineage.added_digests, strict=True):
            shutil.copyfile(path, directory / ADDED_DIR / f"{digest}{path.suffix.lower()}")

    extra = {
        **parent.extra,
        "normalization": to_mapping(calibration.normalization),
        "segmentation": to_mapping(calibration.segmentation),
        "good_scores": to_mapping(scores),
        "train_images": (parent.train_image_count() or 0) + lineage.added_images,
        "lineage": to_mapping(lineage),
    }
    return register_version(
        registry, parent.product, model, dataset, model_kind=parent.model_kind,
        config=parent.config, metrics=metrics, weights=parent.weights, extra=extra,
        save=keep_added,
    )  # fmt: skip
