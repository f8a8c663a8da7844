"""Calibration on a bundle's own outputs and the export gate that compares bundles with FP32."""

from __future__ import annotations

import re
import tracemalloc
from dataclasses import replace

import numpy as np
import pytest

from inspection.core.calibration import (
    Normalization,
    calibrate,
    f1_adaptive_threshold,
    normalize_maps,
    normalize_scores,
)
from inspection.core.export_gate import (
    BundleFigures,
    GateTolerances,
    check_gate,
    measure,
)
from inspection.core.outputs import RawOutputs


def _outputs(shift: float = 0.0, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Raw outputs of 8 good and 8 defective 32 px images; defects are a bright square."""
    rng = np.random.default_rng(seed)
    labels = np.array([0] * 8 + [1] * 8)
    maps = rng.uniform(0.0, 0.3, (16, 32, 32)).astype(np.float32)
    masks = np.zeros((16, 32, 32), bool)
    for i in range(8, 16):
        y, x = rng.integers(2, 20, 2)
        masks[i, y : y + 8, x : x + 8] = True
        maps[i][masks[i]] += 0.3
    maps += shift
    scores = maps.reshape(16, -1).max(axis=1)
    return scores, maps, labels, masks


def test_f1_threshold_separates_classes() -> None:
    threshold, f1 = f1_adaptive_threshold(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1]))
    assert threshold == pytest.approx(0.8) and f1 == pytest.approx(1.0)


def test_shifted_outputs_get_their_own_thresholds() -> None:
    """An INT8-like bundle whose scores sit higher is not judged at FP32's raw thresholds."""
    scores, maps, labels, masks = _outputs()
    fp32 = calibrate(scores, maps, labels, masks, ["good"] * 8 + ["square"] * 8)
    int8 = calibrate(scores + 0.4, maps + 0.4, labels, masks, ["good"] * 8 + ["square"] * 8)
    assert int8.normalization.image_threshold_raw == pytest.approx(
        fp32.normalization.image_threshold_raw + 0.4, abs=1e-5
    )
    assert int8.normalization.pixel_threshold_raw != fp32.normalization.pixel_threshold_raw
    # At FP32's numbers every good part of the shifted bundle would be NG; at its own, none.
    at_fp32 = normalize_scores(scores[:8] + 0.4, fp32.normalization)
    at_own = normalize_scores(scores[:8] + 0.4, int8.normalization)
    assert (at_fp32 >= 0.5).all() and (at_own < 0.5).all()


def test_figures_at_own_thresholds() -> None:
    scores, maps, labels, masks = _outputs(seed=1)
    types = ["good"] * 8 + ["square"] * 8
    calibration = calibrate(scores, maps, labels, masks, types)
    metrics, figures = measure(scores, maps, labels, masks, types, calibration)
    assert (figures.false_reject_rate, figures.miss_rate) == (0.0, 0.0)
    assert (figures.region_recall, figures.ng_without_region) == (1.0, 0)
    assert (figures.n_good, figures.n_defective) == (8, 8)
    assert metrics.per_defect["square"].region_recall == 1.0


def test_shifted_bundle_at_fp32_numbers_fails_the_gate() -> None:
    """The issue's INT8 bundle: judged at FP32's calibration it rejects every good part."""
    scores, maps, labels, masks = _outputs()
    types = ["good"] * 8 + ["square"] * 8
    fp32 = calibrate(scores, maps, labels, masks, types)
    _, reference = measure(scores, maps, labels, masks, types, fp32)
    _, inherited = measure(scores + 0.4, maps + 0.4, labels, masks, types, fp32)
    own = calibrate(scores + 0.4, maps + 0.4, labels, masks, types)
    _, calibrated = measure(scores + 0.4, maps + 0.4, labels, masks, types, own)
    refused = check_gate(inherited, reference, GateTolerances())
    assert not refused.passed and "false_reject_rate 1.000 vs FP32 0.000" in refused.failures[0]
    assert check_gate(calibrated, reference, GateTolerances()).passed


REFERENCE = BundleFigures(
    false_reject_rate=0.0,
    miss_rate=0.0,
    image_auroc=1.0,
    pixel_auroc=0.98,
    aupro=0.95,
    region_recall=0.9,
    ng_without_region=0,
)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"false_reject_rate": 1.0}, "false_reject_rate 1.000 vs FP32 0.000"),
        ({"miss_rate": 0.2}, "miss_rate 0.200 vs FP32 0.000"),
        ({"image_auroc": 0.833}, "image_auroc 0.833 vs FP32 1.000"),
        ({"pixel_auroc": 0.509}, "pixel_auroc 0.509 vs FP32 0.980"),
        ({"aupro": 0.153}, "aupro 0.153 vs FP32 0.950"),
        ({"region_recall": 0.7}, "region_recall 0.700 vs FP32 0.900"),
        ({"ng_without_region": 33}, "ng_without_region 33 (must be 0)"),
    ],
)
def test_gate_refusal_names_the_failed_figure(change: dict, named: str) -> None:
    decision = check_gate(replace(REFERENCE, **change), REFERENCE, GateTolerances())
    assert not decision.passed and len(decision.failures) == 1
    assert named in decision.failures[0] and named in decision.message("brick v0001-int8")


def test_gate_passes_within_tolerances_and_skips_undefined() -> None:
    candidate = replace(
        REFERENCE, false_reject_rate=0.05, image_auroc=0.99, aupro=0.90, pixel_auroc=None
    )
    decision = check_gate(candidate, REFERENCE, GateTolerances())
    assert decision.passed and not any("pixel_auroc" in c for c in decision.checks)


def test_tolerances_are_validated() -> None:
    with pytest.raises(ValueError, match="tolerance aupro must be in"):
        GateTolerances(aupro=-0.1)


def _raw(**changes: object) -> RawOutputs:
    scores, maps, labels, masks = _outputs(seed=2)
    fields = dict(
        scores=scores.astype(np.float64), maps=maps, labels=labels, masks=masks,
        mask_known=np.ones(16, bool), defect_types=("good",) * 8 + ("square",) * 8,
    )  # fmt: skip
    return RawOutputs(**{**fields, **changes})  # type: ignore[arg-type]


def test_raw_outputs_calibrate_and_measure_as_the_functions_do() -> None:
    """Export and tiled training hand over ``RawOutputs``; it calls the one calibrate/measure."""
    raw = _raw()
    calibration = raw.calibrate()
    args = (raw.scores, raw.maps, raw.labels, raw.masks, raw.defect_types)
    assert calibration == calibrate(*args)
    assert raw.measure(calibration) == measure(*args, calibration)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"maps": np.zeros((16, 32), np.float32)}, "maps (N, h, w); got (16,) and (16, 32)"),
        ({"masks": np.zeros((16, 8, 8), bool)}, "masks: expected (16, 32, 32), got (16, 8, 8)"),
        ({"labels": np.zeros(15)}, "need 16 entries each, got (15, 16, 16)"),
        ({"defect_types": ("good",)}, "need 16 entries each, got (16, 16, 1)"),
    ],
)
def test_raw_outputs_reject_mismatched_arrays(changes: dict, error: str) -> None:
    with pytest.raises(ValueError, match=re.escape(error)):
        _raw(**changes)


def test_raw_outputs_of_samples_read_labels_and_ground_truth(tmp_path) -> None:
    """Defective masks are read at the map size; good ones are empty; missing ones unknown."""
    from PIL import Image

    from inspection.data.dataset import Sample

    mask = np.zeros((64, 64), np.uint8)
    mask[:32] = 255  # top half defective, read nearest at the (32, 32) map size
    Image.fromarray(mask).save(tmp_path / "m.png")
    samples = [
        Sample(tmp_path / "a.png", "test", 0, "good"),
        Sample(tmp_path / "b.png", "test", 1, "crack", tmp_path / "m.png"),
        Sample(tmp_path / "c.png", "test", 1, "hole"),
    ]
    raw = RawOutputs.of_samples(samples, np.arange(3), np.zeros((3, 32, 32), np.float64))
    assert raw.scores.dtype == np.float64 and raw.maps.dtype == np.float32
    assert raw.labels.tolist() == [0, 1, 1] and raw.defect_types == ("good", "crack", "hole")
    assert raw.mask_known.tolist() == [True, True, False]
    assert raw.masks[1, :16].all() and not raw.masks[1, 16:].any()
    assert not raw.masks[0].any() and not raw.masks[2].any()


def test_good_only_calibration_sets_both_thresholds_from_good_images() -> None:
    from inspection.core.operating_point import OperatingPoint

    rng = np.random.default_rng(5)
    scores = rng.normal(1.0, 0.1, 30)
    maps = rng.random((30, 16, 16)).astype(np.float32)
    labels = np.zeros(30, dtype=np.int64)
    masks = np.zeros((30, 16, 16), dtype=bool)
    extra = rng.normal(1.0, 0.1, 120)
    calibration = calibrate(
        scores, maps, labels, masks, ["good"] * 30,
        point=OperatingPoint(budget=0.02), extra_good_scores=extra,
        good_sources={"validation": 30, "out_of_fold_train": 120},
    )  # fmt: skip
    choice = calibration.operating
    assert choice is not None and choice.n_good == 150 and choice.sufficient
    assert calibration.normalization.image_threshold_raw == choice.threshold
    good = np.r_[scores, extra]
    assert (good >= choice.threshold).mean() <= 0.02
    peaks = maps.reshape(30, -1).max(axis=1)
    assert (peaks >= calibration.normalization.pixel_threshold_raw).sum() == 0  # n=30 < 49
    assert calibration.image_f1 is None and calibration.pixel_f1 is None
    assert calibration.segmentation.kind == "global"


def test_f1_policy_keeps_the_old_threshold() -> None:
    from inspection.core.operating_point import OperatingPoint

    scores = np.array([0.1, 0.2, 0.3, 0.25, 0.8, 0.9])
    labels = np.array([0, 0, 0, 1, 1, 1])
    maps = np.zeros((6, 8, 8), np.float32)
    masks = np.zeros((6, 8, 8), bool)
    maps[3:, 2:4, 2:4] = 1.0
    masks[3:, 2:4, 2:4] = True
    calibration = calibrate(
        scores, maps, labels, masks, ["good"] * 3 + ["a"] * 3, point=OperatingPoint(policy="f1")
    )
    assert calibration.normalization.image_threshold_raw == f1_adaptive_threshold(scores, labels)[0]


def test_validation_good_scores_that_fitted_standardisers_set_no_threshold() -> None:
    """``validation_good`` False: the threshold is the one the extra good scores alone set,
    however high the validation good scores are."""
    from inspection.core.operating_point import OperatingPoint, choose_threshold

    rng = np.random.default_rng(6)
    scores = np.r_[rng.normal(5.0, 0.1, 20), rng.normal(9.0, 0.1, 5)]  # validation, high
    labels = np.r_[np.zeros(20), np.ones(5)].astype(np.int64)
    maps = rng.random((25, 16, 16)).astype(np.float32)
    masks = np.zeros((25, 16, 16), dtype=bool)
    extra = rng.normal(1.0, 0.1, 120)
    calibration = calibrate(
        scores, maps, labels, masks, ["good"] * 20 + ["crack"] * 5, extra_good_scores=extra,
        good_sources={"out_of_fold_train": 120}, validation_good=False,
    )  # fmt: skip
    choice = calibration.operating
    assert choice.n_good == 120 and choice.good_sources == {"out_of_fold_train": 120}
    assert choice.threshold == choose_threshold(extra, OperatingPoint()).threshold < 2.0


def test_normalised_maps_are_made_in_one_buffer_with_the_rule_s_values() -> None:
    """The calibration's copy of the station's rule made five temporaries the size of a split's
    maps (0.54 s of brick's two-bundle export); now it is the station's, one float32 buffer."""
    rng = np.random.default_rng(3)
    maps = rng.normal(0.4, 0.3, (8, 96, 128)).astype(np.float32)
    norm = Normalization(0.7, 0.45, 0.1, 1.9, -0.2, 1.3)
    tracemalloc.start()
    normalised = normalize_maps(maps, norm)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1.25 * maps.nbytes
    span = np.float32(norm.pixel_max - norm.pixel_min)
    rule = np.clip((maps - np.float32(norm.pixel_threshold_raw)) / span + np.float32(0.5), 0, 1)
    np.testing.assert_array_equal(normalised, rule)  # bitwise: every recorded figure unchanged
    assert normalised.dtype == np.float32 and 0.0 < normalised.mean() < 1.0
