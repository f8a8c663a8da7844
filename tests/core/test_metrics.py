"""Torch-free metrics: AUPRO, region recall, judged figures and their mapping."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inspection.core.calibration import Calibration, Normalization
from inspection.core.errors import ConfigError
from inspection.core.metrics import (
    EvaluationMetrics,
    JudgedSet,
    aupro,
    compute_metrics,
    judge_all,
    mask_counts,
    mask_figures,
    pixel_auroc,
    pixel_figures,
    sorted_pixels,
)
from inspection.core.regions import region_hits
from inspection.core.verdict import Segmentation


def blob_set(rng: np.random.Generator, n_good: int = 6, n_bad: int = 6, size: int = 32):
    """Good maps of low noise; defective maps with one disc of 'strong' or 'faint' type."""
    maps = rng.uniform(0.0, 0.2, (n_good + n_bad, size, size)).astype(np.float32)
    masks = np.zeros(maps.shape, bool)
    types = ["good"] * n_good
    for i in range(n_good, n_good + n_bad):
        kind = "strong" if i % 2 else "faint"
        disc = np.zeros((size, size), np.uint8)
        cv2.circle(disc, (int(rng.integers(8, 24)), int(rng.integers(8, 24))), 4, 1, -1)
        masks[i] = disc.astype(bool)
        maps[i][masks[i]] = 0.9 if kind == "strong" else 0.35
        types.append(kind)
    labels = np.array([0] * n_good + [1] * n_bad)
    scores = maps.reshape(len(maps), -1).max(axis=1)
    return scores, labels, maps, masks, types


def test_aupro_perfect_random_and_undefined() -> None:
    rng = np.random.default_rng(0)
    masks = np.zeros((4, 20, 20), bool)
    masks[:, 5:9, 5:9] = True
    masks[1, 14:16, 2:19] = True
    assert aupro(masks.astype(np.float32), masks) == pytest.approx(1.0)
    many = np.zeros((8, 64, 64), bool)
    many[:, 4:60:8, 4:60:8] = True  # 392 one-pixel regions
    many[:, 10:20, 10:30] = True
    random = aupro(rng.random(many.shape, dtype=np.float32), many)
    assert random == pytest.approx(0.15, abs=0.02)  # PRO ~ FPR for an uninformative map
    assert aupro(np.zeros((2, 4, 4)), np.zeros((2, 4, 4), bool)) is None
    assert pixel_auroc(masks.astype(np.float32), masks) == pytest.approx(1.0)


def test_aupro_weighs_every_region_equally() -> None:
    masks = np.zeros((1, 40, 40), bool)
    masks[0, 0:20, 0:20] = True  # large region, found
    masks[0, 30:32, 30:32] = True  # small region, missed
    maps = np.zeros((1, 40, 40), np.float32)
    maps[0, 0:20, 0:20] = 1.0
    # PRO 0.5 from FPR 0; the last step (everything flagged) interpolates to 0.65 at FPR 0.3
    assert aupro(maps, masks) == pytest.approx(0.575)


def test_region_hits_needs_thirty_percent_overlap() -> None:
    truth = np.zeros((20, 20), bool)
    truth[0:10, 0:10] = True
    truth[15:20, 15:20] = True
    predicted = np.zeros_like(truth)
    predicted[0:4, 0:10] = True  # 40 % of the first
    predicted[15:16, 15:20] = True  # 20 % of the second
    assert region_hits(predicted, truth) == (1, 2)
    assert region_hits(predicted, np.zeros_like(truth)) == (0, 0)


def old_rule(
    scores: np.ndarray, maps: np.ndarray, threshold: float, pixel_threshold: float
) -> JudgedSet:
    """The rule before adaptive segmentation: verdict ``score >= threshold`` and, independently,
    mask ``map >= pixel_threshold`` on every image (NG images may get no region)."""
    masks = maps >= pixel_threshold
    regions = np.array(
        [cv2.connectedComponents(m.astype(np.uint8), connectivity=8)[0] - 1 for m in masks]
    )
    return JudgedSet(ng=scores >= threshold, masks=masks, n_regions=regions)


def test_compute_metrics_per_defect_and_mapping_round_trip() -> None:
    scores, labels, maps, masks, types = blob_set(np.random.default_rng(1))
    old = old_rule(scores, maps, 0.3, 0.5)
    before = compute_metrics(
        scores, labels, maps, masks, types, old, image_threshold=0.3, segmentation="global 0.5"
    )
    assert before.per_defect["faint"].region_recall == 0.0
    assert before.per_defect["strong"].region_recall == 1.0
    assert before.overall.ng_without_region == 3  # faint parts are NG but have no region
    assert before.overall.false_reject_rate == 0.0 and before.overall.miss_rate == 0.0
    faint = (labels == 0) | (np.array(types) == "faint")  # its pixels in one sort
    figures = before.per_defect["faint"].pixel_auroc, before.per_defect["faint"].aupro
    assert figures == pytest.approx(pixel_figures(maps[faint], masks[faint]), abs=1e-12)
    adaptive = Segmentation(kind="adaptive", seed_level=0.3, floor=0.25, relative_level=0.0)
    after = compute_metrics(
        scores, labels, maps, masks, types, judge_all(scores, maps, 0.3, adaptive),
        image_threshold=0.3, segmentation=adaptive.describe(),
    )  # fmt: skip
    assert after.overall.region_recall == 1.0 and after.overall.ng_without_region == 0
    assert after.per_defect["faint"].pixel_f1 == pytest.approx(1.0)
    assert after.overall.false_regions_per_good_image == 0.0
    assert after.per_defect["faint"].ng_pixel_f1 == pytest.approx(1.0)
    assert EvaluationMetrics.from_mapping(after.to_mapping()) == after
    with pytest.raises(ValueError, match="schema"):
        EvaluationMetrics.from_mapping({**after.to_mapping(), "schema": 99})


def test_masks_where_detection_is_right_leave_missed_parts_out() -> None:
    truth = np.zeros((4, 10, 10), bool)
    truth[1, :4, :4] = truth[2, :2, :] = truth[3, 5:, 5:] = True  # 16, 20, 25 pixels
    masks = np.zeros_like(truth)
    masks[0, 9, 9] = True  # a good part with a false region
    masks[1, :4, :2] = True  # half the defect: IoU 0.5, area error 0.5
    masks[2, :2, :] = masks[2, 2, :] = True  # all of it and 10 more: IoU 2/3, area error 0.5
    # part 3 is missed (judged OK, no region): in the all-image figures only
    judged = JudgedSet(np.array([True, True, True, False]), masks, np.array([1, 1, 1, 0]))
    labels = np.array([0, 1, 1, 1])
    figures = mask_figures(mask_counts(judged, truth), labels)
    tp, predicted, true = 8 + 20, 1 + 8 + 30, 16 + 20 + 25
    assert figures["pixel_f1"] == pytest.approx(2 * tp / (predicted + true), abs=1e-6)
    assert figures["ng_pixel_f1"] == pytest.approx(2 * tp / (38 + 36), abs=1e-6)
    assert figures["ng_region_iou"] == pytest.approx((0.5 + 2 / 3) / 2, abs=1e-6)
    assert figures["ng_area_error"] == pytest.approx(0.5)
    assert figures["region_recall"] == pytest.approx(2 / 3, abs=1e-6)
    assert figures["false_regions_per_good_image"] == 1.0
    none_right = mask_figures(mask_counts(judged, truth)[np.array([0, 3])], labels[[0, 3]])
    assert none_right["ng_pixel_f1"] is None and none_right["pixel_f1"] == 0.0


def test_compute_metrics_rejects_mismatched_lengths() -> None:
    scores, labels, maps, masks, types = blob_set(np.random.default_rng(2))
    judged = judge_all(scores, maps, 0.3, Segmentation.global_threshold(0.5))
    with pytest.raises(ValueError, match="same length"):
        compute_metrics(
            scores[:-1], labels, maps, masks, types, judged, image_threshold=0.3, segmentation="g"
        )


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    threshold=st.floats(0.0, 1.0),
    seed_level=st.floats(0.0, 1.0),
    floor_share=st.floats(0.0, 1.0),
    relative=st.floats(0.0, 0.95),
)
def test_judged_sets_keep_the_invariant(
    seed: int, threshold: float, seed_level: float, floor_share: float, relative: float
) -> None:
    rng = np.random.default_rng(seed)
    scores, labels, maps, masks, types = blob_set(rng, n_good=3, n_bad=3, size=24)
    scores = rng.uniform(0, 1, len(scores))
    seg = Segmentation(
        kind="adaptive", seed_level=seed_level, floor=seed_level * floor_share,
        relative_level=relative,
    )  # fmt: skip
    judged = judge_all(scores, maps, threshold, seg)
    assert np.array_equal(judged.ng, scores >= threshold)
    assert (judged.n_regions[judged.ng] >= 1).all()
    assert not judged.masks[~judged.ng].any() and (judged.n_regions[~judged.ng] == 0).all()
    result = compute_metrics(
        scores, labels, maps, masks, types, judged, image_threshold=threshold, segmentation="s"
    )
    assert result.overall.ng_without_region == 0


@pytest.mark.parametrize(
    ("stored", "auroc", "aupro"),
    [
        ({"image_auroc": 0.91, "aupro": 0.7, "fit_seconds": 3.0}, 0.91, 0.7),  # flat
        ({"overall": {"image_auroc": 0.8}, "gate": {"passed": True}}, 0.8, None),  # partial
        ({}, None, None),
    ],
)
def test_metrics_written_before_schema_1_read(stored: dict, auroc: float, aupro: float) -> None:
    metrics = EvaluationMetrics.from_mapping(stored)
    assert (metrics.schema, metrics.image_auroc, metrics.overall.aupro) == (0, auroc, aupro)


def test_stored_metrics_keep_calibration_and_ignore_other_producers_keys() -> None:
    scores, labels, maps, masks, types = blob_set(np.random.default_rng(3))
    seg = Segmentation.global_threshold(0.5)
    metrics = compute_metrics(
        scores, labels, maps, masks, types, judge_all(scores, maps, 0.3, seg),
        image_threshold=0.3, segmentation=seg.describe(),
    )  # fmt: skip
    calibration = Calibration(Normalization(0.3, 0.5, 0.0, 1.0, 0.0, 1.0), seg)
    typed = replace(metrics, calibration=calibration)
    stored = {**typed.to_mapping(), "gate": {"passed": True}, "fit_seconds": 1.5}
    assert EvaluationMetrics.from_mapping(stored) == typed
    with pytest.raises(ConfigError, match="image_auroc"):
        EvaluationMetrics.from_mapping({**stored, "overall": {"image_auroc": "high"}})
    with pytest.raises(ConfigError, match="bogus"):
        EvaluationMetrics.from_mapping({**stored, "overall": {"bogus": 1.0}})


@pytest.mark.parametrize("levels", [3, 17, None])
def test_pixel_auroc_equals_scikit_learn_with_ties(levels: int | None) -> None:
    """One unstable sort, read at the last pixel of each value: ties do not move the figure."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(levels or 0)
    maps = rng.random((6, 24, 24)).astype(np.float32)
    if levels is not None:
        maps = np.round(maps * levels) / levels
    masks = rng.random(maps.shape) < 0.1
    maps[masks] += 0.2
    expected = roc_auc_score(masks.reshape(-1), maps.reshape(-1).astype(np.float64))
    assert pixel_figures(maps, masks)[0] == pytest.approx(expected, abs=1e-12)


def threshold_sweep_aupro(maps: np.ndarray, masks: np.ndarray, limit: float) -> float:
    """AUPRO by brute force: (fpr, mean region overlap) at every distinct map value, from
    (0, 0), trapezoids up to ``limit`` (interpolated there), over ``limit``."""
    weights = np.zeros(masks.shape)
    regions = 0
    for image, mask in enumerate(masks):
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), 8)
        weights[image][labels > 0] = 1.0 / stats[labels[labels > 0], cv2.CC_STAT_AREA]
        regions += count - 1
    fpr, pro = [0.0], [0.0]
    for value in np.unique(maps)[::-1]:
        fpr.append(float((maps[~masks] >= value).mean()))
        pro.append(float(weights[masks & (maps >= value)].sum() / regions))
    end = int(np.searchsorted(fpr, limit, side="right"))
    if end < len(fpr):
        pro = [*pro[:end], float(np.interp(limit, fpr[end - 1 : end + 1], pro[end - 1 : end + 1]))]
        fpr = [*fpr[:end], limit]
    return float(np.trapezoid(pro, fpr) / limit)


@pytest.mark.parametrize("levels", [3, 17, None])
@pytest.mark.parametrize("limit", [0.3, 0.02, 1.0])
def test_aupro_equals_a_threshold_sweep_with_ties(levels: int | None, limit: float) -> None:
    """The curve built only as far as the limit gives the whole sweep's area."""
    rng = np.random.default_rng(levels or 2)
    maps = rng.random((5, 20, 20)).astype(np.float32)
    if levels is not None:
        maps = np.round(maps * levels) / levels
    masks = rng.random(maps.shape) < 0.08  # many small regions
    maps[masks] += 0.25
    expected = threshold_sweep_aupro(maps, masks, limit)
    assert aupro(maps, masks, fpr_limit=limit) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("levels", [2, 9, None])
def test_good_pixels_sorted_apart_give_the_same_figures(levels: int | None) -> None:
    """Good images' pixels given as sorted ``negatives`` (sorted once for every subset) give the
    figures of all images in one sort, ties across both parts included."""
    rng = np.random.default_rng(levels or 1)
    maps = rng.random((7, 20, 20)).astype(np.float32)
    if levels is not None:
        maps = np.round(maps * levels) / levels
    masks = np.zeros(maps.shape, bool)
    masks[3:] = rng.random((4, 20, 20)) < 0.15
    maps[masks] += 0.3
    whole = pixel_figures(maps, masks)
    apart = pixel_figures(maps[3:], masks[3:], negatives=sorted_pixels(maps[:3]))
    assert apart == pytest.approx(whole, abs=1e-12)
    bad_only = pixel_figures(
        maps[3:], np.ones((4, 20, 20), bool), negatives=sorted_pixels(maps[:3])
    )
    assert bad_only[0] is not None  # the negatives alone make two classes
    with pytest.raises(ValueError, match="NaN or infinite"):
        pixel_figures(maps[3:], masks[3:], negatives=np.array([0.0, np.nan], np.float32))


@pytest.mark.parametrize(("levels", "numbered"), [(3, False), (None, False), (None, True)])
def test_each_subsets_pixel_figures_are_those_of_its_images_alone(
    levels: int | None, numbered: bool
) -> None:
    """``compute_metrics`` sorts each kind's non-defect pixels once for every subset it is in
    (``_Rest``): each subset's pixel AUROC and AUPRO are those of its images in one sort, ties
    across kinds included, with a good image whose mask is not empty among them, and kinds
    named by numbers."""
    scores, labels, maps, masks, types = blob_set(np.random.default_rng(5), n_good=5, n_bad=8)
    if levels is not None:
        maps = np.round(maps * levels) / levels
    if numbered:
        types = [{"good": 0, "faint": 1, "strong": 2}[t] for t in types]
    masks[0, :3, :3] = True  # a good image with a marked region: in every subset
    judged = judge_all(scores, maps, 0.3, Segmentation.global_threshold(0.5))
    metrics = compute_metrics(
        scores, labels, maps, masks, types, judged, image_threshold=0.3, segmentation="g"
    )
    kinds = np.array(types).astype(str)
    for name, subset in [("overall", metrics.overall), *metrics.per_defect.items()]:
        keep = np.ones(len(kinds), bool) if name == "overall" else (labels == 0) | (kinds == name)
        expected = pixel_figures(maps[keep], masks[keep])
        assert (subset.pixel_auroc, subset.aupro) == pytest.approx(expected, abs=1e-12), name


def test_pixel_figures_refuse_non_finite_maps_and_mismatched_shapes() -> None:
    masks = np.zeros((2, 4, 4), bool)
    masks[0, 1, 1] = True
    with pytest.raises(ValueError, match="NaN or infinite"):
        pixel_figures(np.full((2, 4, 4), np.nan, np.float32), masks)
    with pytest.raises(ValueError, match="differ in shape"):
        pixel_figures(np.zeros((2, 4, 5), np.float32), masks)
