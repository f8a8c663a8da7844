"""metrics_of_predictions on plain numpy arrays: known answers, per-defect subsets, bad shapes."""

from __future__ import annotations

import numpy as np
import pytest

from inspection.core.calibration import Calibration, Normalization
from inspection.core.metrics import EvaluationMetrics
from inspection.core.verdict import Segmentation
from inspection.training.evaluate import Predictions, metrics_of_predictions


def cal(pixel_threshold: float = 0.5, segmentation: Segmentation | None = None) -> Calibration:
    """Identity normalisation of scores (threshold 0.5); maps shifted so the threshold is 0.5;
    the global pixel threshold unless ``segmentation`` is given."""
    norm = Normalization(0.5, pixel_threshold, 0.0, 1.0, 0.0, 1.0)
    return Calibration(norm, segmentation or Segmentation.global_threshold(0.5))


def compute_metrics(
    scores: np.ndarray,
    labels: np.ndarray,
    maps: np.ndarray,
    masks: np.ndarray,
    types: list[str],
    *,
    calibration: Calibration,
    mask_known: np.ndarray | None = None,
) -> EvaluationMetrics:
    """``metrics_of_predictions`` of these arrays as a model's predictions."""
    predictions = Predictions(
        scores=np.asarray(scores, np.float32), maps=maps, labels=labels, masks=masks,
        mask_known=np.ones(len(scores), bool) if mask_known is None else mask_known,
        defect_types=tuple(types), paths=tuple(f"{i}.png" for i in range(len(scores))),
    )  # fmt: skip
    return metrics_of_predictions(predictions, calibration)


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
    metrics = compute_metrics(scores, labels, maps, masks, types, calibration=cal())
    overall = metrics.overall
    assert overall.image_auroc == 1.0
    assert overall.pixel_auroc == 1.0
    assert overall.aupro == pytest.approx(1.0, abs=1e-3)
    assert overall.image_f1 == 1.0 and overall.pixel_f1 == 1.0
    assert overall.region_recall == 1.0 and overall.ng_without_region == 0
    assert overall.false_reject_rate == 0.0 and overall.miss_rate == 0.0
    assert sorted(metrics.per_defect) == ["hole", "scratch"]
    assert metrics.per_defect["hole"].n_good == 4
    assert metrics.per_defect["hole"].n_defective == 2


def test_inverted_model_scores_low_and_per_defect_uses_its_own_images() -> None:
    labels, types, masks, maps = _case()
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.1, 0.2, 0.95, 0.99])  # holes detected, scratches not
    metrics = compute_metrics(scores, labels, maps, masks, types, calibration=cal(0.9))
    assert metrics.per_defect["hole"].image_auroc == 1.0
    assert metrics.per_defect["scratch"].image_auroc == 0.0
    assert metrics.overall.image_auroc == 0.5
    assert 0.0 <= (metrics.overall.aupro or -1.0) <= 1.0
    assert metrics.to_mapping()["thresholds"] == {
        "image": 0.5,
        "segmentation": "global pixel threshold 0.500",
    }
    assert metrics.calibration == cal(0.9)  # kept, typed, for the report's judged masks
    # every NG (judged at the image threshold) carries a region, even the missed scratches' maps
    assert metrics.overall.ng_without_region == 0


def test_segmentation_is_applied_and_recorded() -> None:
    labels, types, masks, maps = _case()
    core = np.zeros_like(masks)
    core[:, 5:7] = masks[:, 5:7]  # the middle rows of each 4x4 defect are strong
    maps = maps * 0.2 + masks * 0.45 + core * 0.3  # defect rim 0.45-0.55, core >= 0.75
    scores = labels * 0.6 + 0.2
    plain = compute_metrics(scores, labels, maps, masks, types, calibration=cal(0.5))
    adaptive = Segmentation(kind="adaptive", seed_level=0.7, floor=0.44, relative_level=0.0)
    after = compute_metrics(scores, labels, maps, masks, types, calibration=cal(0.5, adaptive))
    assert after.calibration is not None and after.calibration.segmentation == adaptive
    assert after.segmentation == adaptive.describe()
    assert (plain.overall.pixel_f1 or 1.0) < 0.95  # the noisy rim is partly below 0.5
    assert after.overall.pixel_f1 == pytest.approx(1.0)


def test_one_class_gives_none_not_an_error() -> None:
    scores = np.array([0.1, 0.2])
    maps, masks = np.zeros((2, 4, 4), np.float32), np.zeros((2, 4, 4), bool)
    metrics = compute_metrics(
        scores, np.array([0, 0]), maps, masks, ["good", "good"], calibration=cal()
    )
    assert metrics.overall.image_auroc is None
    assert metrics.per_defect == {}


def test_unknown_masks_are_left_out_of_pixel_metrics() -> None:
    labels, types, masks, maps = _case()
    maps = maps * 0.1 + masks.astype(np.float32)
    known = np.ones(8, dtype=bool)
    known[4] = False
    masks_missing = masks.copy()
    masks_missing[4] = False  # a defect with no mask file: all-False ground truth
    scores = maps.max(axis=(1, 2))
    metrics = compute_metrics(
        scores, labels, maps, masks_missing, types, calibration=cal(), mask_known=known,
    )  # fmt: skip
    assert metrics.overall.pixel_auroc == 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labels": np.array([0, 1])}, "labels, mask_known and defect_types need 8 entries"),
        ({"maps": np.zeros((8, 4, 4), np.float32)}, r"masks: expected \(8, 4, 4\)"),
        ({"maps": np.zeros((3, 16, 16), np.float32)}, r"needs scores \(N,\) and maps \(N, h, w\)"),
    ],
)
def test_bad_inputs_are_refused(kwargs: dict, message: str) -> None:
    labels, types, masks, maps = _case()
    args = {"scores": labels.astype(float), "labels": labels, "maps": maps, "gt_masks": masks}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        compute_metrics(
            args["scores"], args["labels"], args["maps"], args["gt_masks"], types,
            calibration=cal(),
        )  # fmt: skip


def test_predictions_check_shapes() -> None:
    with pytest.raises(ValueError, match=r"masks: expected \(2, 4, 4\), got \(2, 3, 3\)"):
        Predictions(
            scores=np.zeros(2, np.float32),
            maps=np.zeros((2, 4, 4), np.float32),
            labels=np.zeros(2, np.int64),
            masks=np.zeros((2, 3, 3), bool),
            mask_known=np.ones(2, bool),
            defect_types=("good", "good"),
            paths=("a", "b"),
        )
