"""``refine.budget``: the refiner choice's pixel budget resizes large images only."""

from __future__ import annotations

import numpy as np
import pytest

from inspection.refine.budget import budget_size, shrink_mask, shrink_result

from .refine_cases import blurred_blob_case, make_result


@pytest.mark.parametrize(
    ("shape", "max_side", "expected"),
    [
        ((256, 256, 3), 512, (256, 256)),
        ((256, 256), None, (256, 256)),
        ((512, 512), 512, (512, 512)),
        ((2048, 2048, 3), 512, (512, 512)),
        ((2048, 1024), 512, (512, 256)),
        ((1000, 3), 10, (10, 1)),
    ],
)
def test_budget_size(shape: tuple[int, ...], max_side: int | None, expected: tuple) -> None:
    assert budget_size(shape, max_side) == expected


def test_budget_size_rejects_a_non_positive_budget() -> None:
    with pytest.raises(ValueError, match="max_side must be >= 1"):
        budget_size((64, 64), 0)


def test_a_one_pixel_scratch_survives_shrinking() -> None:
    mask = np.zeros((400, 400), bool)
    mask[101, 20:380] = True  # 1 px wide at 400 px: 0.25 px at 100 px
    small = shrink_mask(mask, (100, 100))
    assert small.shape == (100, 100) and small[25, 5:95].all() and small.sum() <= 2 * 95


def test_an_ng_result_shrinks_to_an_ng_with_regions_in_the_small_frame() -> None:
    image, _, result = blurred_blob_case(0.5, size=128)
    small_image, small = shrink_result(image, result, (64, 64))
    assert small_image.shape == (64, 64, 3) and small_image.dtype == np.uint8
    assert small.verdict == "NG" and small.score == result.score
    assert small.anomaly_map.shape == small.mask.shape == (64, 64)
    assert small.regions and small.regions[0].box[2] <= 64
    assert small.mask.sum() == pytest.approx(result.mask.sum() / 4, rel=0.3)


def test_an_ok_result_stays_ok_and_a_result_under_budget_is_the_same_object() -> None:
    image, _, _ = blurred_blob_case(0.5, size=128)
    ok = make_result(np.zeros((128, 128), np.float32), 0.5, verdict="OK")
    _, small = shrink_result(image, ok, (32, 32))
    assert small.verdict == "OK" and not small.mask.any()
    same_image, same = shrink_result(image, ok, (128, 128))
    assert same is ok and same_image is image
