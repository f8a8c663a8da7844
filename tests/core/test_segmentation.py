"""Per-product segmentation selection: per-defect-type figures, not pooled pixels."""

from __future__ import annotations

import numpy as np
import pytest

from inspection.core.metrics import compute_metrics, judge_all
from inspection.core.segmentation import candidates, select_segmentation
from inspection.core.verdict import Segmentation
from tests.core.test_metrics import blob_set


def test_selection_finds_the_faint_defect_type_the_pooled_threshold_misses() -> None:
    scores, labels, maps, masks, types = blob_set(np.random.default_rng(3), n_good=8, n_bad=10)
    bad = labels == 1
    chosen = select_segmentation(
        maps[bad], masks[bad], [t for t, b in zip(types, bad, strict=True) if b], maps[~bad]
    )
    judged = judge_all(scores, maps, 0.3, chosen)
    figures = compute_metrics(
        scores, labels, maps, masks, types, judged, image_threshold=0.3, segmentation="x"
    )
    assert figures.per_defect["faint"].region_recall == 1.0
    assert figures.per_defect["faint"].pixel_f1 > 0.9
    assert figures.per_defect["strong"].pixel_f1 > 0.9


def test_candidates_come_from_good_maps_only_and_are_valid() -> None:
    good = np.random.default_rng(4).uniform(0, 0.2, (5, 16, 16)).astype(np.float32)
    grid = candidates(good)
    assert Segmentation.global_threshold(0.5) in grid
    assert 5 < len(grid) <= 40
    assert all(s.floor <= 0.2 or s.kind == "global" for s in grid)
    assert candidates(np.zeros((0, 16, 16), np.float32)) == [Segmentation.global_threshold(0.5)]


def test_select_segmentation_validates_shapes_and_handles_no_defects() -> None:
    maps = np.zeros((2, 8, 8), np.float32)
    with pytest.raises(ValueError, match="defect types"):
        select_segmentation(maps, np.zeros((2, 8, 8), bool), ["a"], maps)
    empty = select_segmentation(maps, np.zeros((2, 8, 8), bool), ["a", "b"], maps)
    assert empty == Segmentation.global_threshold(0.5)
