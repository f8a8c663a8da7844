"""Per-product segmentation selection: per-defect-type figures, not pooled pixels."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from inspection.core.metrics import compute_metrics, judge_all
from inspection.core.regions import region_hits
from inspection.core.segmentation import (
    GOOD_REGION_PENALTY,
    PEAK_LEVELS,
    candidates,
    choose,
    held_out_score,
    kind_scores,
    select_segmentation,
)
from inspection.core.verdict import Segmentation, ng_mask, segment
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


def speck_set(rng: np.random.Generator, n_good: int = 6, n_bad: int = 8, size: int = 48):
    """Maps as a stride-8 patch model draws them: 'hole' discs that fill their mask, and
    faint 'speck's (2 x 2 px) that come out as wide blurred blobs peaking far below 0.5."""
    maps = rng.uniform(0.0, 0.02, (n_good + n_bad, size, size)).astype(np.float32)
    masks = np.zeros(maps.shape, bool)
    types = []
    for i in range(n_good, n_good + n_bad):
        y, x = (int(v) for v in rng.integers(12, size - 12, 2))
        blob = np.zeros((size, size), np.float32)
        if i % 2:
            cv2.circle(masks[i].view(np.uint8), (x, y), 6, 1, -1)
            blob[masks[i]] = 0.9
            types.append("hole")
        else:
            masks[i, y : y + 2, x : x + 2] = True
            blob[y, x] = 1.0
            blob = cv2.GaussianBlur(blob, (0, 0), 4.0)
            blob *= 0.15 / blob.max()
            types.append("speck")
        maps[i] = np.maximum(maps[i], blob)
    return maps[n_good:], masks[n_good:], types, maps[:n_good]


def test_faint_small_defects_get_a_tighter_peak_region_wide_ones_keep_half_maximum() -> None:
    maps, masks, types, good = speck_set(np.random.default_rng(0))
    tight = select_segmentation(maps, masks, types, good)
    assert tight.peak_level == max(PEAK_LEVELS) and tight.floor > 0.15  # specks fall back
    specks = np.array(types) == "speck"
    f1 = {}
    for seg in (tight, replace(tight, peak_level=0.5)):
        predicted = np.stack([ng_mask(m, seg) for m in maps[specks]])
        f1[seg.peak_level] = (
            2 * (predicted & masks[specks]).sum() / (predicted.sum() + masks[specks].sum())
        )
    assert f1[tight.peak_level] > 2 * f1[0.5]
    # the same maps, with each speck as wide as its blob's half-maximum: 0.5 stays
    wide = masks.copy()
    wide[specks] = maps[specks] >= 0.5 * maps[specks].max(axis=(1, 2), keepdims=True)
    assert select_segmentation(maps, wide, types, good).peak_level == 0.5
    # only the faint images judged NG choose (the station draws no region on an OK image)
    holes_only = np.array(types) == "hole"
    assert select_segmentation(maps, masks, types, good, ng=holes_only).peak_level == 0.5


def test_a_level_that_fits_the_seen_kinds_but_fails_an_unseen_one_is_not_chosen() -> None:
    """Leave-one-kind-out: the adaptive candidate wins the mean over kinds (0.667 > 0.6) by
    failing one kind outright; held out, that kind scores 0, so the global 0.5 family (0.6 on
    every kind) is preferred. Where the adaptive one also serves the held-out kind, it is kept."""
    adaptive = Segmentation(kind="adaptive", seed_level=0.6, floor=0.3, relative_level=0.25)
    grid = [Segmentation.global_threshold(0.5), Segmentation.global_threshold(0.4), adaptive]
    overfit = np.array([[0.6, 0.6, 0.6], [0.5, 0.5, 0.5], [1.0, 1.0, 0.0]])
    penalty = np.zeros(3)
    assert overfit.mean(1).argmax() == 2  # what the mean over kinds alone would pick
    assert held_out_score(overfit, penalty) == pytest.approx(0.4)
    assert held_out_score(overfit[:1], penalty[:1]) == pytest.approx(0.6)
    assert choose(grid, overfit, penalty) == Segmentation.global_threshold(0.5)
    general = overfit.copy()
    general[2, 2] = 0.7
    assert choose(grid, general, penalty) == adaptive
    assert choose(grid, overfit[:, :1], penalty) == adaptive  # one kind: nothing to hold out


def test_kind_scores_label_each_map_once_per_floor_with_the_per_candidate_figures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each defective map's components are labelled once per floor and each truth mask's once
    (not once per candidate), and the figures are those of segmenting every map anew for every
    candidate: ``ng_mask``, ``segment`` and ``region_hits`` per (candidate, map)."""
    rng = np.random.default_rng(5)

    def smooth(count: int) -> np.ndarray:
        maps = [cv2.GaussianBlur(rng.random((48, 48)).astype(np.float32), (0, 0), 3.0)
                for _ in range(count)]  # fmt: skip
        return np.stack([(m - m.min()) / (m.max() - m.min()) for m in maps])  # peak 1.0

    maps, good = smooth(9), 0.7 * smooth(6)
    masks = maps > 0.8
    types = ["a", "b", "c"] * 3
    grid = candidates(good)
    calls = []
    labelled = cv2.connectedComponents
    monkeypatch.setattr(
        cv2, "connectedComponents", lambda *a, **k: calls.append(1) or labelled(*a, **k)
    )
    scores, penalty = kind_scores(maps, masks, types, good, grid)
    floors = len({seg.floor for seg in grid})
    assert len(grid) > 2 * floors
    assert len(calls) <= len(maps) * (floors + 1) + len(good) * floors

    monkeypatch.setattr(cv2, "connectedComponents", labelled)
    kinds = sorted(set(types))
    for row, seg in enumerate(grid):
        predicted = [ng_mask(m, seg) for m in maps]
        for column, kind in enumerate(kinds):
            rows = [i for i, t in enumerate(types) if t == kind]
            hits = [region_hits(predicted[i], masks[i]) for i in rows]
            total = sum(h[1] for h in hits)
            recall = sum(h[0] for h in hits) / total if total else 1.0
            tp = sum(int((predicted[i] & masks[i]).sum()) for i in rows)
            pixels = sum(int(predicted[i].sum() + masks[i].sum()) for i in rows)
            assert scores[row, column] == (recall + 2 * tp / max(pixels, 1)) / 2
        with_region = np.mean([segment(m, seg).any() for m in good])
        assert penalty[row] == GOOD_REGION_PENALTY * with_region
