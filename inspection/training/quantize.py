"""INT8 post-training quantisation of an OpenVINO model with NNCF.

Calibration uses good training images preprocessed exactly as the station does
(``inspection.runtime.preprocess``); accuracy control validates on the labelled test
split with image AUROC and lets NNCF revert layers to float until the drop is at most
``max_drop``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import openvino as ov

log = logging.getLogger(__name__)


def image_auroc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve of image scores; NaN when only one class is present."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    if labels.min() == labels.max():
        return float("nan")
    return float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64)))


def quantize_int8(
    model: ov.Model,
    calibration: Sequence[np.ndarray],
    *,
    validation: Sequence[tuple[np.ndarray, int]] | None = None,
    max_drop: float = 0.01,
    score_output: str = "pred_score",
) -> ov.Model:
    """Quantise ``model`` to INT8.

    ``calibration``: (3, h, w) float32 model inputs of good images. With ``validation``
    ((3, h, w) input, label) pairs, runs ``nncf.quantize_with_accuracy_control`` with an
    absolute image-AUROC ``max_drop``; otherwise plain ``nncf.quantize``.
    """
    import nncf

    if not calibration:
        raise ValueError("INT8 quantisation needs at least one calibration image")
    calibration_set = nncf.Dataset(list(calibration), lambda item: item[None])
    subset = len(calibration)
    if validation is None:
        log.info("quantising to INT8 with %d calibration images", subset)
        return nncf.quantize(model, calibration_set, subset_size=subset)

    def validate(
        compiled: ov.CompiledModel, items: Sequence[tuple[np.ndarray, int]]
    ) -> tuple[float, list[float]]:
        """Image AUROC over ``items`` plus each item's raw score (NNCF ranks layers by them)."""
        port = compiled.output(score_output)
        scores, labels = [], []
        for tensor, label in items:
            scores.append(float(np.ravel(compiled(tensor)[port])[0]))
            labels.append(int(label))
        auroc = image_auroc(scores, labels)
        return (0.0 if np.isnan(auroc) else auroc), scores

    validation_set = nncf.Dataset(
        [(tensor[None], int(label)) for tensor, label in validation], lambda item: item[0]
    )
    log.info(
        "quantising to INT8 with accuracy control (max image-AUROC drop %.3f, %d validation images)",
        max_drop,
        len(validation),
    )
    return nncf.quantize_with_accuracy_control(
        model,
        calibration_set,
        validation_set,
        validate,
        max_drop=max_drop,
        drop_type=nncf.DropType.ABSOLUTE,
        subset_size=subset,
    )
