"""Predict with a trained model and measure it with the torch-free ``inspection.core.metrics``.

``metrics_of_predictions`` judges raw outputs exactly as the station does, overall and per
defect type.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inspection.core.calibration import (
    Calibration,
    normalize_maps,
    normalize_scores,
)
from inspection.core.images import DEFAULT_SOURCE_BITS
from inspection.core.metrics import EvaluationMetrics, JudgedSet, judge_all
from inspection.core.outputs import RawOutputs
from inspection.data.dataset import Dataset, Sample
from inspection.training.backbones import channels_last
from inspection.training.plots import save_plots
from inspection.training.samples import Predictions, SampleDataset, mask_known

logger = logging.getLogger(__name__)


def predict(
    model: Any,
    data: Dataset | Sequence[Sample],
    *,
    image_size: tuple[int, int] | None = None,
    batch_size: int = 8,
    bits: int = DEFAULT_SOURCE_BITS,
    value_range: tuple[float, float] | None = None,
) -> Predictions:
    """Run ``model`` (an anomalib module) on samples or a Dataset's test split; ``image_size``
    defaults to its pre-processor's, ``bits``: significant bits of 16-bit images,
    ``value_range``: the declared range of signed and float ones."""
    samples = list(data.test_samples if isinstance(data, Dataset) else data)
    if not samples:
        raise ValueError("predict: no samples to run on")
    size = tuple(image_size or model.input_size or ())
    if len(size) != 2:
        raise ValueError("predict: give image_size; the model's pre-processor has no Resize")
    dataset = SampleDataset(samples, (int(size[0]), int(size[1])), bits, value_range)

    scores, maps, masks = [], [], []
    model.eval()
    with torch.no_grad(), channels_last(model.model):
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            images = torch.stack([item.image for item in items])
            output = model.model(model.pre_processor(images))
            scores.append(output.pred_score.reshape(-1).float().numpy())
            maps.append(output.anomaly_map.reshape(len(items), *images.shape[-2:]).float().numpy())
            masks.extend(item.gt_mask.numpy().astype(bool) for item in items)
    return Predictions(
        scores=np.concatenate(scores).astype(np.float32),
        maps=np.concatenate(maps).astype(np.float32),
        labels=np.array([s.label for s in samples], dtype=np.int64),
        masks=np.stack(masks),
        mask_known=np.array([mask_known(s) for s in samples], dtype=bool),
        defect_types=tuple(s.defect_type for s in samples),
        paths=tuple(str(s.path) for s in samples),
        bits=bits,
        value_range=value_range,
    )


def metrics_of_predictions(predictions: RawOutputs, calibration: Calibration) -> EvaluationMetrics:
    """``core.metrics`` figures of raw predictions judged at ``calibration`` as stations judge."""
    metrics, _ = predictions.measure(calibration)
    return replace(metrics, calibration=calibration)


def judged_rows(
    predictions: Predictions, metrics: EvaluationMetrics, rows: Sequence[int]
) -> JudgedSet | None:
    """The station's verdicts and (len(rows), H, W) masks at the metrics' calibration (or None)."""
    calibration = metrics.calibration
    if calibration is None:
        return None
    norm = calibration.normalization
    scores = normalize_scores(predictions.scores[rows], norm)
    maps = normalize_maps(predictions.maps[rows], norm)
    return judge_all(scores, maps, 0.5, calibration.segmentation)


def write_report(out_dir: str | Path, predictions: Predictions, metrics: EvaluationMetrics) -> Path:
    """Write ``metrics.json`` and the PNG plots into ``out_dir``; returns ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(
        json.dumps(metrics.to_mapping(), indent=2, sort_keys=True, default=str),
        encoding="utf-8",
    )
    save_plots(out_dir, predictions, metrics, lambda rows: judged_rows(predictions, metrics, rows))
    logger.info("report written to %s", out_dir)
    return out_dir
