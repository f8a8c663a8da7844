"""Physical units: region sizes in mm and the minimum defect area through the one verdict rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inspection.core.config import from_mapping
from inspection.core.errors import ConfigError
from inspection.core.regions import extract_regions
from inspection.core.types import DefectRegion, InspectionResult, scale_regions
from inspection.core.units import PhysicalUnits, with_sizes
from inspection.core.verdict import Segmentation, judge

SEG = Segmentation.global_threshold(0.5)


def _map(spots: list[tuple[int, int, int]]) -> np.ndarray:
    """(64, 64) float32 map with square spots (x, y, side) at 0.9 on 0.1."""
    amap = np.full((64, 64), 0.1, np.float32)
    for x, y, side in spots:
        amap[y : y + side, x : x + side] = 0.9
    return amap


def test_sizes_in_mm_scale_with_image_width() -> None:
    units = PhysicalUnits(mm_per_pixel=0.05, reference_width=2048)
    region = DefectRegion(box=(0, 0, 30, 40), area=100, peak=(1, 1), max_score=1, mean_score=1)
    (full,) = with_sizes([region], units, 2048)
    assert full.area_mm2 == pytest.approx(100 * 0.05**2)
    assert full.length_mm == pytest.approx(50 * 0.05)
    (half,) = with_sizes([region], units, 1024)  # a half-size image: pixels twice as large
    assert half.area_mm2 == pytest.approx(4 * full.area_mm2)
    assert with_sizes([region], None, 2048) == (region,)
    assert full.to_dict()["length_mm"] == pytest.approx(2.5)


@pytest.mark.parametrize(
    ("pixels", "length", "width"),
    [
        ([(5, 5)], 1.0, 1.0),  # one pixel
        ([(x, 10) for x in range(3, 13)], 10.0, 1.0),  # a 10-pixel horizontal line
        ([(10, y) for y in range(0, 20)], 20.0, 1.0),  # a 20-pixel vertical line
        ([(x, y) for x in range(4) for y in range(7)], 7.0, 4.0),  # a 4 x 7 block
        ([(i, i) for i in range(30)], 29 * math.sqrt(2) + 1, 1.0),  # a diagonal line
    ],
)
def test_regions_measure_length_and_width(pixels: list, length: float, width: float) -> None:
    mask = np.zeros((40, 40), bool)
    for x, y in pixels:
        mask[y, x] = True
    (region,) = extract_regions(mask.astype(np.float32), mask)
    assert region.length == pytest.approx(length, abs=0.05)
    assert region.width == pytest.approx(width, abs=0.05)
    (sized,) = with_sizes([region], PhysicalUnits(mm_per_pixel=0.1, reference_width=40), 40)
    assert sized.length_mm == pytest.approx(0.1 * region.length)
    assert sized.width_mm == pytest.approx(0.1 * region.width)
    assert sized.to_dict()["width"] == pytest.approx(width, abs=0.05)


def test_scaled_regions_keep_their_measurements_in_target_pixels() -> None:
    mask = np.zeros((32, 32), bool)
    mask[8, 2:12] = True
    regions = extract_regions(mask.astype(np.float32), mask)
    (scaled,) = scale_regions(regions, (32, 32), (128, 128))
    assert scaled.length == pytest.approx(4 * regions[0].length)
    assert scaled.width == pytest.approx(4 * regions[0].width)


def test_min_area_px() -> None:
    units = PhysicalUnits(mm_per_pixel=0.1, reference_width=100, min_defect_area_mm2=0.5)
    assert units.min_area_px(100) == pytest.approx(50.0)
    assert units.min_area_px(50) == pytest.approx(12.5)
    assert PhysicalUnits(0.1, 100).min_area_px(100) is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"mm_per_pixel": 0, "reference_width": 10}, "mm_per_pixel must be a positive"),
        ({"mm_per_pixel": 0.1, "reference_width": 0}, "reference_width"),
        ({"mm_per_pixel": 0.1, "reference_width": 9, "min_defect_area_mm2": -1}, ">= 0"),
        ({"mm_per_pixel": 0.1, "reference_width": 9, "min_area": 1}, "unknown key"),
    ],
)
def test_bad_units_are_rejected(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_mapping(PhysicalUnits, data, where="units")


def test_small_regions_do_not_make_an_ng() -> None:
    amap = _map([(10, 10, 3)])  # 9 px
    assert judge(0.9, 0.5, amap, SEG).verdict == "NG"
    judged = judge(0.9, 0.5, amap, SEG, min_area=10)
    assert judged.verdict == "OK" and not judged.mask.any() and not judged.regions
    assert [r.area for r in judged.candidates] == [9]
    big = judge(0.9, 0.5, _map([(10, 10, 3), (40, 40, 4)]), SEG, min_area=10)
    assert big.verdict == "NG" and max(r.area for r in big.regions) == 16


def test_result_holds_the_extended_rule() -> None:
    amap = _map([(10, 10, 3)])
    judged = judge(0.9, 0.5, amap, SEG, min_area=10)

    def result(verdict: str, regions: tuple, candidates: tuple, mask: np.ndarray, minimum):
        return InspectionResult(
            score=0.9, threshold=0.5, verdict=verdict, anomaly_map=amap, mask=mask,
            regions=regions, candidates=candidates, latency_ms=1.0, model_version="x/v1",
            min_defect_area=minimum,
        )  # fmt: skip

    ok = result("OK", (), judged.candidates, judged.mask, 10)
    assert ok.verdict == "OK"
    with pytest.raises(ValueError, match="minimum defect area"):
        result("OK", (), judged.candidates, judged.mask, None)  # no minimum: must be NG
    ng = judge(0.9, 0.5, amap, SEG)
    with pytest.raises(ValueError, match="contradicts"):
        result("NG", ng.regions, (), ng.mask, 10)  # 9 px NG under a 10 px minimum
    assert math.isfinite(ok.score)
