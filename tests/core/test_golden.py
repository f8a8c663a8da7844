"""Golden outputs: the record's validation and the drift rule (normalised units)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from inspection.core.calibration import Normalization
from inspection.core.golden import (
    GOLDEN_IMAGES,
    GRID,
    MIN_MARGIN,
    NEAR_THRESHOLD,
    GoldenImage,
    GoldenOutputs,
    MapSummary,
    carry_threshold,
    choose_golden,
    compare_golden,
    golden_outputs,
    golden_scales,
    summarize_map,
)
from inspection.core.operating_point import BUDGET_CONFIDENCE, OperatingPoint, choose_threshold

NORM = Normalization(
    image_threshold_raw=2.0, pixel_threshold_raw=1.5,
    image_min=1.0, image_max=3.0, pixel_min=0.0, pixel_max=4.0,
)  # fmt: skip
RNG = np.random.default_rng(3)
SCORES = np.array([1.2, 2.7], dtype=np.float32)
MAPS = RNG.uniform(0.0, 3.0, (2, 16, 16)).astype(np.float32)
FILES = ("golden/00.png", "golden/01.png")


def _record(tolerance: float = 0.01) -> GoldenOutputs:
    return golden_outputs(FILES, SCORES, MAPS, NORM, tolerance=tolerance, precision="f32")


def test_summary_is_the_maximum_and_the_grid_cell_means() -> None:
    raw = np.arange(64, dtype=np.float32).reshape(8, 8)
    summary = summarize_map(raw)
    assert summary.max == 63.0
    assert len(summary.grid) == GRID * GRID
    assert summary.grid[0] == pytest.approx(np.mean([0, 1, 8, 9]))
    assert summary.grid[-1] == pytest.approx(np.mean([54, 55, 62, 63]))


def test_scales_are_the_normalisation_spans() -> None:
    assert golden_scales(NORM) == (2.0, 4.0)
    flat = Normalization(2.0, 1.5, 1.0, 1.0, 0.0, 0.0)
    assert golden_scales(flat) == (2.0, 1.5)  # degenerate span: the threshold's magnitude


def test_the_same_outputs_pass_with_zero_drift() -> None:
    check = compare_golden(_record(), SCORES, MAPS, bundle="brick/v1-fp32", precision="f32")
    assert check.passed and check.worst_drift == 0.0
    assert check.summary()["passed"] is True and check.summary()["images"] == 2


@pytest.mark.parametrize(
    ("score_shift", "map_shift", "worst", "passed"),
    [
        (0.01, 0.0, 0.005, True),  # 0.01 raw / scale 2 = 0.005
        (0.03, 0.0, 0.015, False),
        (0.0, 0.02, 0.005, True),  # 0.02 raw / scale 4
        (0.0, 0.06, 0.015, False),
    ],
)
def test_drift_is_measured_in_normalised_units(score_shift, map_shift, worst, passed) -> None:
    check = compare_golden(_record(), SCORES + score_shift, MAPS + map_shift)
    assert check.worst_drift == pytest.approx(worst, rel=1e-3)
    assert check.passed is passed
    assert ("REFUSED" in check.message()) is not passed


def test_a_local_change_in_the_map_is_seen_by_its_cell() -> None:
    maps = MAPS.copy()
    maps[1, :4, :4] += 0.4  # one grid cell of the second image, below the map's maximum
    check = compare_golden(_record(), SCORES, maps)
    assert check.worst_file == FILES[1]
    assert check.worst_drift == pytest.approx(0.1, rel=1e-3)


# ------------------------------------------------- verdicts: each image's margin
def test_each_image_records_its_served_scores_margin_to_the_threshold() -> None:
    served = SCORES - np.float32(0.1)  # ROI-masked scores, as the verdicts use them
    record = golden_outputs(FILES, SCORES, MAPS, NORM, served=served)
    # |served - threshold 2.0| / score scale 2.0
    assert [image.margin for image in record.images] == pytest.approx([0.45, 0.3], abs=1e-6)
    assert [image.margin for image in _record().images] == pytest.approx([0.4, 0.35], abs=1e-6)


@pytest.mark.parametrize(("shift", "passed"), [(0.008, True), (-0.008, True), (0.012, False)])
def test_a_drift_larger_than_an_images_margin_is_refused(shift: float, passed: bool) -> None:
    """1.99 sits 0.005 (normalised) below the threshold 2.0: a raw drift of 0.012 (0.006,
    within the 1 % tolerance) could flip its verdict and is refused; 0.008 (0.004) is not."""
    near = np.array([1.99, 2.7], dtype=np.float32)
    record = golden_outputs(FILES, near, MAPS, NORM)
    assert record.images[0].margin == pytest.approx(0.005, abs=1e-6)
    check = compare_golden(record, near + np.array([shift, 0.0], np.float32), MAPS)
    assert check.worst_drift < check.tolerance  # the old rule would pass them all
    assert check.passed is passed
    if not passed:
        assert [d.file for d in check.flipping] == [FILES[0]]
        assert "golden/00.png's score drifted 0.006" in check.message()
        assert "its verdict could flip" in check.message()
        assert check.summary()["may_flip"] == [FILES[0]]


def test_a_record_without_margins_keeps_the_tolerance() -> None:
    record = _record()
    old = dataclasses.replace(
        record, images=tuple(dataclasses.replace(i, margin=None) for i in record.images)
    )
    assert compare_golden(old, SCORES + np.float32(0.018), MAPS).passed  # 0.009 < 0.01
    assert not compare_golden(old, SCORES + np.float32(0.022), MAPS).passed


def test_golden_images_are_the_first_ones_then_the_nearest_to_the_threshold() -> None:
    margins = np.array([0.5, 0.4, 0.3, 0.2, 0.9, MIN_MARGIN / 2, 0.05, 0.01, 0.6, 0.02, 0.03])
    chosen = choose_golden(margins)
    assert chosen[:GOLDEN_IMAGES] == list(range(GOLDEN_IMAGES))
    assert chosen[GOLDEN_IMAGES:] == [7, 9, 10, 6][:NEAR_THRESHOLD]  # 5 is too close to tell
    assert choose_golden(margins[:3]) == [0, 1, 2]


def test_no_golden_image_sits_on_the_threshold() -> None:
    """A first image whose score is the threshold (margin 0) would refuse the bundle on any
    kernel's last bit: the next clear one takes its place."""
    margins = np.array([0.5, 0.0, 0.3, MIN_MARGIN / 2, 0.2, 0.9, 0.05, 0.01, 0.6])
    chosen = choose_golden(margins)
    assert chosen[:GOLDEN_IMAGES] == [0, 2, 4, 5]
    assert chosen[GOLDEN_IMAGES:] == [7, 6, 8][:NEAR_THRESHOLD]
    assert all(margins[i] >= MIN_MARGIN for i in chosen)


def test_nan_outputs_are_refused() -> None:
    maps = MAPS.copy()
    maps[0, 3, 3] = np.nan
    check = compare_golden(_record(), SCORES, maps)
    assert not check.passed and check.worst_drift == float("inf")


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda: MapSummary(1.0, (0.0,) * 3), "map grid must have 16 cells"),
        (lambda: GoldenImage("elsewhere/00.png", 1.0, summarize_map(MAPS[0])), "under golden/"),
        (lambda: GoldenOutputs((), 1.0, 1.0), "at least one image"),
        (lambda: _record(tolerance=0.0), r"tolerance must be in \(0, 1\)"),
        (lambda: golden_outputs(FILES[:1], SCORES, MAPS, NORM), "one score and one map"),
        (lambda: compare_golden(_record(), SCORES[:1], MAPS[:1]), "the 2 golden images"),
        (lambda: summarize_map(np.zeros((2, 8))), r"h, w >= 4"),
    ],
)
def test_bad_records_and_outputs_are_rejected(build, error) -> None:
    with pytest.raises(ValueError, match=error):
        build()


# ------------------------------------------------- a threshold across re-calibration
def _budget_value(good: np.ndarray, budget: float, confidence: float | None = None) -> float:
    return choose_threshold(good, OperatingPoint(budget=budget), confidence=confidence).threshold


def test_a_threshold_set_at_a_budget_keeps_its_rank_on_as_many_station_scores() -> None:
    """Same count of good scores: the carried threshold rejects the same number of them as the
    value did on the bundle's, i.e. the threshold the same budget sets on the station's."""
    before = np.sort(RNG.uniform(0.0, 0.45, 40))
    after = RNG.uniform(0.1, 0.6, 40)  # another scale: the station's re-calibrated scores
    value = _budget_value(before, 0.1)
    carried, how = carry_threshold(value, before, after)
    assert carried == pytest.approx(_budget_value(after, 0.1))
    assert int((after >= carried).sum()) == int((before >= value).sum()) == 3
    assert "re-derived at the false-reject budget it held, 9.76% (3 of the bundle's 40" in how


def test_the_carried_threshold_keeps_the_guarantee_it_held_on_more_station_scores() -> None:
    before = RNG.uniform(0.0, 0.45, 6)
    after = RNG.uniform(0.2, 0.7, 30)
    value = _budget_value(before, 0.3)  # rejects 1 of 6: P(reject) <= 2 / 7
    carried, _ = carry_threshold(value, before, after)
    assert carried is not None
    rejected = int((after >= carried).sum())
    assert rejected == 7  # above the 23rd of 30 = ceil(31 * 5 / 7)
    assert (rejected + 1) / 31 <= 2 / 7
    assert np.sort(after)[22] < carried < np.sort(after)[23]


@pytest.mark.parametrize("before", [np.linspace(0.1, 0.45, 4), np.empty(0)])
def test_a_threshold_set_at_a_budget_is_re_derived_at_it_above_every_good_score(before) -> None:
    """A 5 % budget on 4 good validation scores puts the value above all of them (the common
    case: fewer good parts than the budget needs); the version records its budget, so it is
    re-derived at it, kept with the page's confidence. The validation scores are not needed."""
    value = _budget_value(np.linspace(0.1, 0.45, 4), 0.05)
    after = RNG.uniform(0.1, 0.6, 60)  # 0 of 60 rejected: 95 % upper bound 4.87 % <= 5 %
    assert carry_threshold(value, before, after)[0] is None  # by its rank: no budget to tell
    carried, how = carry_threshold(value, before, after, budget=0.05)
    assert carried == pytest.approx(_budget_value(after, 0.05, BUDGET_CONFIDENCE))
    assert carried > after.max()
    assert how == (
        "re-derived at the false-reject budget it was set at, 5.00%, on this station's 60 "
        "re-calibrated good images (above the 60-th)"
    )
    carried, _ = carry_threshold(value, before, after, budget=0.2)
    on_average = int((after >= _budget_value(after, 0.2)).sum())  # the marginal rule's
    assert int((after >= carried).sum()) == 6 < on_average  # 6 of 60: bound 18.8 %; 7: 20.8 %


def test_a_threshold_set_at_a_budget_the_station_cannot_hold_is_not_carried() -> None:
    carried, how = carry_threshold(0.9, np.linspace(0.1, 0.45, 4), RNG.uniform(0, 1, 99), 0.01)
    assert carried is None  # 99 hold 1 % on average, 299 with 95 % confidence
    assert how == (
        "the false-reject budget it was set at, 1.00%: it needs 299 good images here, the "
        "station's folder holds 99"
    )


@pytest.mark.parametrize(
    ("value", "before", "after", "why"),
    [
        (0.5, (), np.linspace(0.1, 0.6, 30), "ships no labelled good validation scores"),
        (0.8, np.linspace(0.1, 0.45, 6), np.linspace(0.1, 0.6, 30), "above all 6 good"),
        (0.2, np.linspace(0.1, 0.45, 6), np.linspace(0.1, 0.6, 30), "rejects 4 of the bundle's 6"),
        (
            0.3,  # half of them: (3 + 1) / 7 > 50 %
            np.linspace(0.1, 0.45, 6),
            np.linspace(0.1, 0.6, 30),
            "rejects 3 of the bundle's 6 good validation parts: the false-reject budget that "
            "holds, 57.14%, is above the 50% an operating point may set",
        ),
        (0.4, np.linspace(0.1, 0.45, 6), (), "used no good images"),
        (
            0.44,
            np.linspace(0.1, 0.45, 40),
            np.linspace(0.1, 0.6, 10),
            "needs 13 good images here, the station's folder holds 10",
        ),
    ],
)
def test_a_threshold_that_cannot_be_carried_says_why(value, before, after, why) -> None:
    carried, how = carry_threshold(value, before, after)
    assert carried is None
    assert why in how
