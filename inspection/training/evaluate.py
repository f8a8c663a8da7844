"""Predict with a trained model and compute MVTec AD metrics from plain numpy arrays.

``compute_metrics`` takes numpy only, so OpenVINO bundles, torch models and retraining
candidates are all measured by the same code:

- image AUROC and pixel AUROC (scikit-learn ``roc_auc_score``);
- AUPRO: per-region overlap integrated up to 30 % FPR and divided by 0.3, as MVTec AD
  defines it (anomalib's ``AUPRO`` metric);
- F1 of images and of pixels at the given thresholds (scikit-learn ``f1_score``);

overall and per defect type (that type's defective images vs all good images). Scores, maps
and thresholds must be in the same space (raw model outputs here; normalised works too).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score

from inspection.core.calibration import Normalization
from inspection.data.dataset import Dataset, Sample

logger = logging.getLogger(__name__)

AUPRO_FPR_LIMIT = 0.3


@dataclass(frozen=True)
class Predictions:
    """Model outputs on N test images, raw (not min-max normalised).

    scores: (N,) float32 image anomaly scores; maps: (N, H, W) float32 anomaly maps at the
    model input resolution (``image_size``); labels: (N,) int64 0 good / 1 defective;
    gt_masks: (N, H, W) bool ground truth resized (nearest) to the map resolution;
    mask_known: (N,) bool, False for a defective image without a mask file.
    """

    scores: np.ndarray
    maps: np.ndarray
    labels: np.ndarray
    gt_masks: np.ndarray
    mask_known: np.ndarray
    defect_types: tuple[str, ...]
    paths: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.scores)
        if self.scores.shape != (n,):
            raise ValueError(f"scores: expected shape (N,), got {self.scores.shape}")
        if self.maps.ndim != 3 or len(self.maps) != n:
            raise ValueError(f"maps: expected ({n}, H, W), got {self.maps.shape}")
        if self.gt_masks.shape != self.maps.shape:
            raise ValueError(f"gt_masks: expected {self.maps.shape}, got {self.gt_masks.shape}")
        for name in ("labels", "mask_known", "defect_types", "paths"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name}: expected {n} entries, got {len(getattr(self, name))}")


def predict(
    model: Any,
    data: Dataset | Sequence[Sample],
    *,
    image_size: tuple[int, int] | None = None,
    batch_size: int = 8,
) -> Predictions:
    """Run ``model`` (an anomalib module, e.g. from ``load_trained_model``) on samples.

    ``data`` is a list of samples or a Dataset (its test split). ``image_size`` defaults to
    the size in the model's pre-processor.
    """
    import torch

    from inspection.training.train import SampleDataset, mask_known

    samples = list(data.test_samples if isinstance(data, Dataset) else data)
    if not samples:
        raise ValueError("predict: no samples to run on")
    size = tuple(image_size or model.input_size or ())
    if len(size) != 2:
        raise ValueError("predict: give image_size; the model's pre-processor has no Resize")
    dataset = SampleDataset(samples, (int(size[0]), int(size[1])))
    scores, maps, masks = [], [], []
    model.eval()
    with torch.no_grad():
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
        gt_masks=np.stack(masks),
        mask_known=np.array([mask_known(s) for s in samples], dtype=bool),
        defect_types=tuple(s.defect_type for s in samples),
        paths=tuple(str(s.path) for s in samples),
    )


def compute_metrics(
    scores: np.ndarray,
    labels: np.ndarray,
    maps: np.ndarray | None,
    gt_masks: np.ndarray | None,
    defect_types: Sequence[str],
    *,
    image_threshold: float,
    pixel_threshold: float,
    mask_known: np.ndarray | None = None,
) -> dict[str, Any]:
    """Image AUROC, pixel AUROC, AUPRO and F1s, overall and per defect type.

    scores (N,), labels (N,) 0/1, maps and gt_masks (N, H, W) or None (pixel metrics are then
    None). Images whose ``mask_known`` is False are left out of pixel metrics. A metric that
    is undefined for the data (e.g. AUROC with one class) is None.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    types = np.asarray(list(defect_types))
    n = len(scores)
    if len(labels) != n or len(types) != n:
        raise ValueError(
            f"scores, labels and defect_types need the same length, got {n}, {len(labels)}, {len(types)}"
        )
    if (maps is None) != (gt_masks is None):
        raise ValueError("give both maps and gt_masks, or neither")
    if maps is not None:
        maps = np.asarray(maps, dtype=np.float32)
        gt_masks = np.asarray(gt_masks).astype(bool)
        if maps.shape != gt_masks.shape or maps.ndim != 3 or len(maps) != n:
            raise ValueError(
                f"maps and gt_masks must both be (N, H, W) with N={n}, "
                f"got {maps.shape} and {gt_masks.shape}"
            )
    known = np.ones(n, dtype=bool) if mask_known is None else np.asarray(mask_known, dtype=bool)

    def subset(select: np.ndarray) -> dict[str, Any]:
        pixel_select = select & known
        return _metrics(
            scores[select],
            labels[select],
            None if maps is None else maps[pixel_select],
            None if gt_masks is None else gt_masks[pixel_select],
            image_threshold,
            pixel_threshold,
        )

    good = labels == 0
    per_defect = {
        defect: subset(good | (types == defect))
        for defect in sorted(set(types[labels == 1].tolist()))
    }
    return {
        "overall": subset(np.ones(n, dtype=bool)),
        "per_defect": per_defect,
        "thresholds": {"image": float(image_threshold), "pixel": float(pixel_threshold)},
    }


def metrics_of_predictions(
    predictions: Predictions, normalization: Normalization
) -> dict[str, Any]:
    """``compute_metrics`` of a model's predictions at its raw image and pixel thresholds."""
    return compute_metrics(
        predictions.scores,
        predictions.labels,
        predictions.maps,
        predictions.gt_masks,
        predictions.defect_types,
        image_threshold=normalization.image_threshold_raw,
        pixel_threshold=normalization.pixel_threshold_raw,
        mask_known=predictions.mask_known,
    )


def _metrics(
    scores: np.ndarray,
    labels: np.ndarray,
    maps: np.ndarray | None,
    masks: np.ndarray | None,
    image_threshold: float,
    pixel_threshold: float,
) -> dict[str, Any]:
    both_classes = 0 < labels.sum() < len(labels)
    result: dict[str, Any] = {
        "n_good": int((labels == 0).sum()),
        "n_defective": int((labels == 1).sum()),
        "image_auroc": float(roc_auc_score(labels, scores)) if both_classes else None,
        "image_f1": float(f1_score(labels, scores >= image_threshold, zero_division=0)),
        "pixel_auroc": None,
        "aupro": None,
        "pixel_f1": None,
    }
    if maps is None or masks is None or not masks.any() or masks.all():
        return result
    flat_maps, flat_masks = maps.reshape(-1), masks.reshape(-1)
    result["pixel_auroc"] = float(roc_auc_score(flat_masks, flat_maps))
    result["aupro"] = aupro(maps, masks)
    result["pixel_f1"] = float(f1_score(flat_masks, flat_maps >= pixel_threshold, zero_division=0))
    return result


def aupro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = AUPRO_FPR_LIMIT) -> float:
    """Normalised area under the per-region-overlap curve up to ``fpr_limit`` (anomalib AUPRO).

    maps (N, H, W) float, masks (N, H, W) bool with at least one defective pixel.
    """
    import torch
    from anomalib.metrics import AUPRO

    metric = AUPRO(fields=("anomaly_map", "gt_mask"), fpr_limit=fpr_limit)
    metric.update(
        SimpleNamespace(
            anomaly_map=torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32)),
            gt_mask=torch.from_numpy(np.ascontiguousarray(masks)),
        )
    )
    return float(metric.compute())


def write_report(out_dir: str | Path, predictions: Predictions, metrics: dict[str, Any]) -> Path:
    """Write ``metrics.json`` and the PNG plots into ``out_dir``; returns ``out_dir``."""
    from inspection.training.plots import save_plots

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(
        json.dumps(metrics, indent=2, sort_keys=True, default=str), encoding="utf-8"
    )
    save_plots(out_dir, predictions, metrics)
    logger.info("report written to %s", out_dir)
    return out_dir
