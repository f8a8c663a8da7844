"""PatchCore: a memory bank of backbone patch features, nearest-neighbour scores."""

from __future__ import annotations

import time

import torch
from torch.utils.data import DataLoader

from inspection.core.product_config import ModelConfig
from inspection.training.backbones import (
    ResolvedWeights,
    apply_weights,
    channels_last,
    no_pretrained_download,
)
from inspection.training.models.common import ModelKind, Stages, anomalib_options, fit_with_engine
from inspection.training.models.patchcore import local_stats, out_of_fold
from inspection.training.models.patchcore.lightning_model import Patchcore


def build(config: ModelConfig, weights: ResolvedWeights) -> Patchcore:
    """An untrained ``Patchcore`` of ``config`` with ``weights`` in its feature extractor."""
    with no_pretrained_download():
        model = Patchcore(
            **anomalib_options(config, weights),
            pre_trained=False,
            coreset_sampling_ratio=config.coreset_sampling_ratio,
            num_neighbors=config.num_neighbors,
            memory_bank_max=config.memory_bank_max,
            local_statistics=config.local_statistics_mode != "off",
            image_score=config.image_score,
            bank_augment=config.bank_augment,
            rows_budget_gb=config.rows_budget_gb,
        )
    apply_weights(model.model.feature_extractor.feature_extractor, weights)
    return model


def fit(
    model: Patchcore,
    config: ModelConfig,
    train_loader: DataLoader,
    validation_loader: DataLoader | None,
    progress: bool,
    stages: Stages = None,
) -> float:
    """PatchCore's one training epoch without lightning's ``Trainer`` (nothing to optimise), then
    the coreset; with a ``validation_loader`` (tiles), anomalib's ``Engine``. Returns seconds."""
    if validation_loader is not None:
        return fit_with_engine(model, config, train_loader, validation_loader, progress)
    started = time.perf_counter()
    model.train()
    with torch.no_grad(), channels_last(model.model):
        for index, batch in enumerate(train_loader):
            batch.image, batch.gt_mask = model.pre_processor.transform(batch.image, batch.gt_mask)
            model.training_step(batch, index)
            if stages is not None:
                stages("features", index + 1, len(train_loader))
        if stages is not None:
            stages("memory bank", 0, 1)
        model.on_train_epoch_end()
    return time.perf_counter() - started


KIND = ModelKind(
    "patchcore",
    build,
    fit=fit,
    out_of_fold_scores=out_of_fold.out_of_fold_scores,
    out_of_fold_sees_roi=True,
    fit_local_statistics=local_stats.fit_for_model,
    memory_bank=True,
)
