"""What every model kind shares: the interface a kind's folder fills in (``ModelKind``), the
anomalib constructor options of a config and the fit through anomalib's ``Engine``."""

from __future__ import annotations

import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from anomalib.pre_processing import PreProcessor
from torch.utils.data import DataLoader
from torchvision.transforms.v2 import Compose, Normalize, Resize

from inspection.core.product_config import ModelConfig
from inspection.data.dataset import Sample
from inspection.training.backbones import ResolvedWeights, channels_last
from inspection.training.roi import TrainingRoi

Stages = Callable[[str, int, int], None] | None
"""Told (stage, done, total) as a long stage advances, or None."""
# Lightning warnings that are expected here and would only confuse an operator.
_EXPECTED_WARNINGS = (
    ".*configure_optimizers. returned .None.",  # PatchCore has nothing to optimise
    ".*module\\(s\\) in eval mode",  # frozen backbones and teachers
    ".*infer the .batch_size.",
    ".*but have no logger configured",  # we log no training curves
    ".*isinstance\\(treespec, LeafSpec\\)",
)


def fit_with_engine(
    model: Any,
    config: ModelConfig,
    train_loader: DataLoader,
    validation_loader: DataLoader | None,
    progress: bool,
    stages: Stages = None,
) -> float:
    """Training through anomalib's ``Engine`` (``stages`` unused); returns the seconds."""
    # deferred: anomalib's Engine (~1 s of imports on a 2-core AVX2 EPYC) trains STFPM and PaDiM
    from anomalib.engine import Engine

    run_dir = Path(tempfile.mkdtemp(prefix="inspection-train-"))
    try:
        engine = Engine(
            default_root_dir=run_dir,
            logger=False,
            accelerator="cpu",
            devices=1,
            max_epochs=config.max_epochs,
            # thresholds and min-max come from the last validation (anomalib's post-processor
            # resets them every validation epoch): earlier epochs' validation is wasted work
            check_val_every_n_epoch=model.trainer_arguments.get("max_epochs", config.max_epochs),
            enable_progress_bar=progress,
            enable_model_summary=False,
            deterministic="warn",
        )
        started = time.perf_counter()
        with warnings.catch_warnings(), channels_last(model.model):
            for message in _EXPECTED_WARNINGS:
                warnings.filterwarnings("ignore", message=message)
            engine.fit(model, train_dataloaders=train_loader, val_dataloaders=validation_loader)
        seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return seconds


@dataclass(frozen=True)
class ModelKind:
    """One model kind as training, calibration and export see it: its hooks and what it can do.
    Nothing outside its folder switches on its name."""

    name: str
    build: Callable[[ModelConfig, ResolvedWeights], Any]
    """An untrained anomalib model of the config, with the weights in its backbone."""
    fit: Callable[[Any, ModelConfig, DataLoader, DataLoader | None, bool, Stages], float] = (
        fit_with_engine
    )
    """Fits the built model on (train, validation or None) loaders; returns the seconds."""
    out_of_fold_scores: (
        Callable[[Any, ModelConfig, Sequence[Sample], TrainingRoi | None, Stages], np.ndarray]
        | None
    ) = None
    """(N,) float64 raw scores of the training images, each by a model fitted without its
    fold (more good scores to calibrate on, ``training.operating``); None: the kind has none."""
    out_of_fold_sees_roi: bool = False
    """Its out-of-fold scores are of the training ROI (else of whole images, which an ROI
    bundle cannot calibrate on)."""
    fit_local_statistics: (
        Callable[[Any, ModelConfig, Sequence[Sample], Sequence[Sample], TrainingRoi | None], Any]
        | None
    ) = None
    """Fits the fused local colour-statistics model (``local_statistics``) of a trained model
    on (train, validation) and returns the choice to record; None: the kind has none."""
    memory_bank: bool = False
    """Scores by kNN distance to a bank of good patch rows: served on the bank's top principal
    directions (``knn_rank``), extended by new good images (``training.incremental``)."""
    tiling_refusal: str = ""
    """Why the kind cannot be trained on tiles ('' where it can)."""


def anomalib_options(config: ModelConfig, weights: ResolvedWeights) -> dict[str, Any]:
    """The backbone and layers of ``config``, a resize-and-normalise pre-processor, and no
    evaluator or visualizer (metrics and figures are ours)."""
    resize = Resize(list(config.image_size), antialias=True)
    normalize = Normalize(mean=list(weights.mean), std=list(weights.std))
    return {
        "backbone": config.backbone.name,
        "layers": list(config.backbone.layers),
        "pre_processor": PreProcessor(transform=Compose([resize, normalize])),
        "evaluator": False,
        "visualizer": False,
    }
