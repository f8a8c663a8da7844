"""The report's figures speak the station's scale (normalised, NG from 0.5) and verdicts."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from inspection.core.metrics import JudgedSet
from inspection.training.evaluate import judged_rows
from inspection.training.plots import _verdict, shown_scores
from inspection.training.samples import Predictions
from tests.conftest import TINY_PATCHCORE, TrainedProduct


def _predictions(labels: list[int]) -> Predictions:
    n = len(labels)
    return Predictions(
        scores=np.linspace(0.0, 1.0, n, dtype=np.float32),
        maps=np.zeros((n, 4, 4), np.float32),
        labels=np.asarray(labels, np.int64),
        masks=np.zeros((n, 4, 4), bool),
        mask_known=np.ones(n, bool),
        defect_types=tuple("crack" if label else "good" for label in labels),
        paths=tuple(f"{i}.png" for i in range(n)),
    )


@pytest.mark.parametrize(
    ("label", "ng", "shown"),
    [(1, True, "NG"), (1, False, "OK missed"), (0, False, "OK"), (0, True, "NG false reject")],
)
def test_each_example_row_says_its_verdict_and_whether_it_is_wrong(
    label: int, ng: bool, shown: str
) -> None:
    judged = JudgedSet(
        ng=np.array([ng]), masks=np.zeros((1, 4, 4), bool), n_regions=np.zeros(1, np.int64)
    )
    assert _verdict(_predictions([label]), judged, 0, 0) == shown
    assert _verdict(_predictions([label]), None, 0, 0) == ""


def test_report_scores_are_normalised_with_the_threshold_at_one_half(
    trained_patchcore: TrainedProduct,
) -> None:
    from inspection.core.product_config import model_config_from_mapping
    from inspection.data.dataset import load_dataset
    from inspection.training.evaluate import predict
    from inspection.training.train import evaluation_splits, load_trained_model

    record = trained_patchcore.record
    metrics = record.evaluation()
    config = model_config_from_mapping(TINY_PATCHCORE, where="tests TINY_PATCHCORE")
    _, test = evaluation_splits(config, load_dataset(trained_patchcore.dataset_root))
    predictions = predict(load_trained_model(record), test, image_size=config.image_size)
    shown, axis = shown_scores(predictions, metrics)
    raw_threshold = metrics.calibration.normalization.image_threshold_raw
    assert "0.5" in axis and shown.min() >= 0.0 and shown.max() <= 1.0
    np.testing.assert_array_equal(shown >= 0.5, predictions.scores >= raw_threshold)
    judged = judged_rows(predictions, metrics, list(range(len(shown))))
    assert judged is not None and judged.masks.shape == predictions.maps.shape
    raw, axis = shown_scores(predictions, replace(metrics, calibration=None))
    assert axis.startswith("raw") and np.array_equal(raw, predictions.scores)
