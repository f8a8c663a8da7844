"""compute_metrics on plain numpy arrays: known answers, per-defect subsets, bad shapes."""

from __future__ import annotations

import numpy as np
import pytest

from inspection.training.evaluate import Predictions, compute_metrics


def _case(seed: int = 0):
    """4 good + 2 'scratch' + 2 'hole' images of 16x16 with square defects."""
    rng = np.random.default_rng(seed)
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    types = ["good"] * 4 + ["scratch", "scratch", "hole", "hole"]
    masks = np.zeros((8, 16, 16), dtype=bool)
    for i in range(4, 8):
        masks[i, 4:8, 4 + i : 8 + i] = True
    maps = rng.random((8, 16, 16)).astype(np.float32) * 0.5
    return labels, types, masks, maps


def test_perfect_model_scores_one_everywhere() -> None:
    labels, types, masks, maps = _case()
    maps = maps * 0.1 + masks.astype(np.float32)  # defects light up exactly
    scores = maps.max(axis=(1, 2))
    metrics = compute_metrics(
        scores, labels, maps, masks, types, image_threshold=0.5, pixel_threshold=0.5
    )
    overall = metrics["overall"]
    assert overall["image_auroc"] == 1.0
    assert overall["pixel_auroc"] == 1.0
    assert overall["aupro"] == pytest.approx(1.0, abs=1e-3)
    assert overall["image_f1"] == 1.0 and overall["pixel_f1"] == 1.0
    assert sorted(metrics["per_defect"]) == ["hole", "scratch"]
    assert metrics["per_defect"]["hole"]["n_good"] == 4
    assert metrics["per_defect"]["hole"]["n_defective"] == 2


def test_inverted_model_scores_low_and_per_defect_uses_its_own_images() -> None:
    labels, types, masks, maps = _case()
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.1, 0.2, 0.95, 0.99])  # holes detected, scratches not
    metrics = compute_metrics(
        scores, labels, maps, masks, types, image_threshold=0.5, pixel_threshold=0.9
    )
    assert metrics["per_defect"]["hole"]["image_auroc"] == 1.0
    assert metrics["per_defect"]["scratch"]["image_auroc"] == 0.0
    assert metrics["overall"]["image_auroc"] == 0.5
    assert 0.0 <= metrics["overall"]["aupro"] <= 1.0
    assert metrics["thresholds"] == {"image": 0.5, "pixel": 0.9}


def test_without_maps_pixel_metrics_are_none() -> None:
    labels, types, _, _ = _case()
    metrics = compute_metrics(
        labels.astype(float), labels, None, None, types, image_threshold=0.5, pixel_threshold=0.5
    )
    assert metrics["overall"]["image_auroc"] == 1.0
    assert metrics["overall"]["pixel_auroc"] is None and metrics["overall"]["aupro"] is None


def test_one_class_gives_none_not_an_error() -> None:
    scores = np.array([0.1, 0.2])
    metrics = compute_metrics(
        scores, np.array([0, 0]), None, None, ["good", "good"], image_threshold=0.5,
        pixel_threshold=0.5,
    )  # fmt: skip
    assert metrics["overall"]["image_auroc"] is None
    assert metrics["per_defect"] == {}


def test_unknown_masks_are_left_out_of_pixel_metrics() -> None:
    labels, types, masks, maps = _case()
    maps = maps * 0.1 + masks.astype(np.float32)
    known = np.ones(8, dtype=bool)
    known[4] = False
    masks_missing = masks.copy()
    masks_missing[4] = False  # a defect with no mask file: all-False ground truth
    scores = maps.max(axis=(1, 2))
    metrics = compute_metrics(
        scores, labels, maps, masks_missing, types, image_threshold=0.5, pixel_threshold=0.5,
        mask_known=known,
    )  # fmt: skip
    assert metrics["overall"]["pixel_auroc"] == 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labels": np.array([0, 1])}, "scores, labels and defect_types need the same length"),
        ({"maps": None}, "give both maps and gt_masks, or neither"),
        ({"maps": np.zeros((8, 4, 4), np.float32)}, "maps and gt_masks must both be"),
    ],
)
def test_bad_inputs_are_refused(kwargs: dict, message: str) -> None:
    labels, types, masks, maps = _case()
    args = {"scores": labels.astype(float), "labels": labels, "maps": maps, "gt_masks": masks}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        compute_metrics(
            args["scores"], args["labels"], args["maps"], args["gt_masks"], types,
            image_threshold=0.5, pixel_threshold=0.5,
        )  # fmt: skip


def test_predictions_check_shapes() -> None:
    with pytest.raises(ValueError, match=r"gt_masks: expected \(2, 4, 4\), got \(2, 3, 3\)"):
        Predictions(
            scores=np.zeros(2, np.float32),
            maps=np.zeros((2, 4, 4), np.float32),
            labels=np.zeros(2, np.int64),
            gt_masks=np.zeros((2, 3, 3), bool),
            mask_known=np.ones(2, bool),
            defect_types=("good", "good"),
            paths=("a", "b"),
        )
