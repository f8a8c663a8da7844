"""ROI polygons -> mask, and the masked score/map (torch-free)."""

from __future__ import annotations

import numpy as np
import pytest

from inspection.core.config import from_mapping
from inspection.core.errors import ConfigError
from inspection.core.roi import RoiSpec, apply_roi, apply_roi_batch

SQUARE = ((10.0, 10.0), (90.0, 10.0), (90.0, 90.0), (10.0, 90.0))
HOLE = ((40.0, 40.0), (60.0, 40.0), (60.0, 60.0), (40.0, 60.0))


def test_include_minus_exclude() -> None:
    mask = RoiSpec((100, 100), include=(SQUARE,), exclude=(HOLE,)).mask(100, 100)
    assert mask[20, 20] and not mask[5, 5] and not mask[50, 50]
    assert abs(mask.sum() - (80 * 80 - 20 * 20)) < 200


def test_polygons_scale_to_other_sizes() -> None:
    roi = RoiSpec((100, 200), include=(((0.0, 0.0), (100.0, 0.0), (100.0, 100.0), (0.0, 100.0)),))
    small = roi.mask(50, 100)  # half size: the left half stays inside
    assert small[:, :48].all() and not small[:, 52:].any()


def test_no_include_means_whole_image() -> None:
    mask = RoiSpec((10, 10), exclude=(((0.0, 0.0), (4.0, 0.0), (4.0, 4.0)),)).mask(10, 10)
    assert mask[9, 9] and not mask[0, 0]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"reference_size": [100, 100], "include": [[[0, 0], [1, 1]]]}, "at least 3 points"),
        ({"reference_size": [100, 100], "include": [[[0, 0], [900, 0], [0, 9]]]}, "far outside"),
        ({"reference_size": [100, 100], "exclude": [[[-5, -5], [105, -5], [105, 105], [-5, 105]]]},
         "the ROI is empty"),
        ({"reference_size": [100, 100], "inclde": []}, "unknown key"),
    ],
)  # fmt: skip
def test_bad_specs_are_rejected(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_mapping(RoiSpec, data, where="roi")


def test_round_trip_through_mapping() -> None:
    roi = RoiSpec((100, 100), include=(SQUARE,), exclude=(HOLE,))
    assert from_mapping(RoiSpec, roi.to_mapping()) == roi


def test_peak_outside_the_roi_no_longer_sets_the_score() -> None:
    roi = RoiSpec((100, 100), include=(SQUARE,))
    raw = np.full((100, 100), 1.0, np.float32)
    raw[2, 2] = 8.0  # background peak
    raw[50, 50] = 2.0  # the worst point on the part
    score, masked = apply_roi(16.0, raw, roi)
    assert score == pytest.approx(4.0)  # 16 * 2 / 8
    assert masked[2, 2] == 0.0 and masked[50, 50] == 2.0


def test_peak_inside_keeps_the_model_score() -> None:
    roi = RoiSpec((100, 100), include=(SQUARE,))
    raw = np.zeros((32, 32), np.float32)
    raw[16, 16] = 3.0
    scores, maps = apply_roi_batch(np.asarray([5.0]), raw[None], roi)
    assert scores[0] == pytest.approx(5.0) and maps.shape == (1, 32, 32)
    same_scores, same_maps = apply_roi_batch(np.asarray([5.0]), raw[None], None)
    assert same_maps is not None and same_scores[0] == 5.0


def test_training_record_round_trips_and_checks_its_counts() -> None:
    from inspection.core.config import to_mapping
    from inspection.core.roi import RoiTraining

    roi = RoiSpec((100, 100), include=(SQUARE,), exclude=(HOLE,))
    record = RoiTraining(roi, 0.6, patches_kept=10, patches_total=40, tiles_kept=2, tiles_total=4)
    assert from_mapping(RoiTraining, to_mapping(record)) == record
    assert record.describe() == (
        "60% of the training pixels inside the ROI, 2 of 4 tiles, 10 of 40 patches"
    )
    for bad in ({"inside_fraction": 1.5}, {"patches_kept": 5}, {"tiles_kept": 5, "tiles_total": 4}):
        with pytest.raises(ValueError):
            RoiTraining(**{"roi": roi, "inside_fraction": 0.5, **bad})
