"""The INT8 accuracy gate of the exporter (the end-to-end export tests live in tests/runtime)."""

from __future__ import annotations

import pytest

from inspection.training.export import AccuracyDropError, check_int8_drop


@pytest.mark.parametrize(
    ("fp32", "int8", "tolerance", "force", "expected"),
    [
        (0.95, 0.95, 0.01, False, 0.0),
        (0.95, 0.945, 0.01, False, 0.005),
        (0.95, 0.94, 0.01, False, 0.01),  # exactly at the tolerance is allowed
        (0.95, 0.97, 0.01, False, -0.02),  # INT8 better
        (0.95, 0.90, 0.01, True, 0.05),  # forced: registered, drop recorded
        (0.95, 0.90, 0.10, False, 0.05),
    ],
)
def test_int8_drop_within_tolerance_or_forced(fp32, int8, tolerance, force, expected) -> None:
    drop = check_int8_drop(fp32, int8, tolerance=tolerance, force=force)
    assert drop == pytest.approx(expected)


@pytest.mark.parametrize(("fp32", "int8", "tolerance"), [(0.95, 0.93, 0.01), (1.0, 0.5, 0.2)])
def test_int8_drop_above_tolerance_is_refused(fp32, int8, tolerance) -> None:
    with pytest.raises(AccuracyDropError, match="not registering it") as info:
        check_int8_drop(fp32, int8, tolerance=tolerance, force=False)
    assert f"tolerance {tolerance}" in str(info.value) and "--force" in str(info.value)
