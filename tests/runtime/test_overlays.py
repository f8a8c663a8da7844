"""Overlays: the verdict label is drawn whole at every image size."""

from __future__ import annotations

import numpy as np
import pytest

from inspection.core.regions import extract_regions
from inspection.core.types import InspectionResult
from inspection.runtime.overlays import render_overlay


@pytest.mark.parametrize("side", [64, 256, 512, 1024])
def test_the_verdict_label_is_not_cut_at_the_top(side: int) -> None:
    """At 512 px the label's top (its outline rows) lay above the image: 'NG 1.000' read cut."""
    amap = np.zeros((side, side), np.float32)
    amap[-side // 4 :, -side // 4 :] = 1.0  # a defect far from the label
    mask = amap > 0.5
    result = InspectionResult(
        score=1.0, threshold=0.5, verdict="NG", anomaly_map=amap, mask=mask,
        regions=extract_regions(amap, mask), latency_ms=0.0, model_version="t/v1",
    )  # fmt: skip
    image = np.full((side, side, 3), 255, np.uint8)  # white: the label's black outline shows
    overlay = render_overlay(image, result, alpha=0.0)
    drawn = (overlay < 250).any(axis=2)
    rows = np.flatnonzero(drawn.any(axis=1))
    assert rows.size and rows[0] >= 1, rows[:3]  # a white row above the label
