"""The per-bundle refiner choice: the rule, its validation and its place in bundle metadata."""

from __future__ import annotations

import pytest

from inspection.core.bundle import BundleMetadata
from inspection.core.config import from_mapping, to_mapping
from inspection.core.refinement import RefinementChoice, choose_method


@pytest.mark.parametrize(
    ("pixel_f1", "min_gain", "expected"),
    [
        ({"raw": 0.40, "grabcut": 0.46, "random_walker": 0.42}, 0.01, "grabcut"),
        ({"raw": 0.40, "grabcut": 0.41, "random_walker": 0.45}, 0.01, "random_walker"),
        ({"raw": 0.40, "grabcut": 0.405}, 0.01, "none"),  # gain below min_gain
        ({"raw": 0.12, "grabcut": 0.10, "random_walker": 0.11}, 0.01, "none"),  # both hurt
        ({"raw": 0.40, "grabcut": 0.40}, 0.0, "none"),  # a tie is no gain
        ({"grabcut": 0.9}, 0.01, "none"),  # nothing to compare with
        ({"raw": 0.4, "grabcut": None}, 0.01, "none"),
    ],
)
def test_choose_method_table(pixel_f1, min_gain, expected) -> None:
    assert choose_method(pixel_f1, min_gain=min_gain) == expected


@pytest.mark.parametrize(
    ("region_iou", "expected"),
    [
        ({"raw": 0.30, "grabcut": 0.35, "random_walker": 0.31}, "grabcut"),
        ({"raw": 0.30, "grabcut": 0.25, "random_walker": 0.31}, "random_walker"),  # IoU lost
        ({"raw": 0.30, "grabcut": 0.29, "random_walker": 0.20}, "none"),  # both lose IoU
        ({"raw": 0.30, "random_walker": 0.31}, "random_walker"),  # grabcut not measured
        ({}, "grabcut"),  # a choice without IoU figures: pixel F1 alone
    ],
)
def test_a_refiner_that_lowers_region_iou_is_not_kept(region_iou, expected) -> None:
    pixel_f1 = {"raw": 0.40, "grabcut": 0.46, "random_walker": 0.42}
    assert choose_method(pixel_f1, min_gain=0.01, region_iou=region_iou) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "watershed"}, "refiner method must be one of"),
        ({"method": "none", "images": -1}, "must be >= 0"),
        ({"method": "grabcut", "pixel_f1": {"raw": 0.4}}, "chosen without its measurement"),
    ],
)
def test_invalid_choices_are_rejected(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        RefinementChoice(**kwargs)


def test_describe_says_what_and_why() -> None:
    chosen = RefinementChoice("grabcut", images=8, pixel_f1={"raw": 0.4, "grabcut": 0.46})
    assert chosen.gain == pytest.approx(0.06)
    assert "grabcut: +0.060 over raw" in chosen.describe() and "8 defective" in chosen.describe()
    kept = RefinementChoice("none", images=8, pixel_f1={"raw": 0.4, "grabcut": 0.38})
    assert kept.gain is None and "no refiner beat the raw mask" in kept.describe()
    assert "no labelled defects" in RefinementChoice("none").describe()


def test_choice_round_trips_through_bundle_metadata(fp32_bundle) -> None:
    from inspection.core.bundle import read_bundle_metadata

    meta = read_bundle_metadata(fp32_bundle)
    choice = RefinementChoice(
        "random_walker",
        images=3,
        pixel_f1={"raw": 0.3, "random_walker": 0.5},
        region_iou={"raw": 0.2, "random_walker": 0.4},
    )
    data = to_mapping(BundleMetadata(**{**meta.__dict__, "refinement": choice}))
    assert from_mapping(BundleMetadata, data).refinement == choice
    data["refinement"]["method"] = "magic"
    with pytest.raises(ValueError, match=r"refinement\.method: must be one of"):
        from_mapping(BundleMetadata, data)
