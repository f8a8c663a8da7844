"""Choose a product's segmentation on its validation split (torch-free).

Candidates come from good-image map statistics only (never the defects): global thresholds at
0.5 and at high quantiles of good pixels, and adaptive hysteresis over floors, seed levels and
``RELATIVE_LEVELS``. Each is applied as the station does (``verdict.ng_mask``) and scored per
defect kind by (region recall + pixel F1) / 2, minus a penalty for regions on good images.
To serve unseen kinds the choice is leave-one-kind-out over three nested families (global 0.5;
global thresholds; the whole grid): the family with the best held-out mean (ties: the simpler)
chooses on every kind. Then ``peak_level`` for faint NG images (peak below ``floor``) is chosen
from ``PEAK_LEVELS`` on those images alone (none, or ties: the half-maximum).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from inspection.core.regions import TruthRegions
from inspection.core.verdict import FloorComponents, Segmentation, ng_mask, segment

GOOD_PIXEL_QUANTILES = (0.99, 0.999, 0.9999)
GOOD_PEAK_QUANTILES = (0.5, 0.9)
RELATIVE_LEVELS = (0.0, 0.25, 0.5)
PEAK_LEVELS = (0.5, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9)
"""Faint-peak levels (``Segmentation.peak_level``); the half-maximum first, so ties keep it."""
GOOD_REGION_PENALTY = 0.1
"""Objective points lost per unit share of good images with a candidate region."""


def candidates(good_maps: np.ndarray, fallback: np.ndarray | None = None) -> list[Segmentation]:
    """The bounded candidate grid from good-image maps ((G, H, W) in [0, 1]); without them,
    ``fallback`` values (e.g. the non-defect pixels) stand in."""
    if len(good_maps):
        values = good_maps[:, ::2, ::2].reshape(-1)
        peaks = good_maps.reshape(len(good_maps), -1).max(axis=1)
    elif fallback is not None and fallback.size:
        values = peaks = np.asarray(fallback, dtype=np.float32).reshape(-1)
    else:
        return [Segmentation.global_threshold(0.5)]
    floors = sorted({_level(q) for q in np.quantile(values, GOOD_PIXEL_QUANTILES)})
    seeds = sorted({0.5, *(_level(q) for q in np.quantile(peaks, GOOD_PEAK_QUANTILES))})
    grid = [Segmentation.global_threshold(level) for level in sorted({0.5, *floors})]
    for floor in floors:
        for seed in seeds:
            for relative in RELATIVE_LEVELS:
                if seed <= floor and relative == 0.0:
                    continue  # the global threshold at ``floor``, already in the grid
                grid.append(
                    Segmentation(
                        kind="adaptive",
                        seed_level=max(seed, floor),
                        floor=floor,
                        relative_level=relative,
                    )
                )
    return list(dict.fromkeys(grid))


def kind_scores(
    maps: np.ndarray,
    masks: np.ndarray,
    defect_types: Sequence[str],
    good_maps: np.ndarray,
    grid: Sequence[Segmentation],
) -> tuple[np.ndarray, np.ndarray]:
    """(C, K) float (region recall + pixel F1) / 2 of each candidate on each defect kind
    (sorted names) and (C,) its penalty for regions on good images (module docstring). Each
    map's components are labelled once per floor, each truth mask's once (``FloorComponents``,
    ``TruthRegions``): the same figures as segmenting every map anew for every candidate."""
    kinds = sorted(set(defect_types))
    found = np.zeros((len(grid), len(kinds)), np.int64)
    overlap = np.zeros_like(found)  # predicted & truth pixels
    predicted_pixels = np.zeros_like(found)
    truths, truth_pixels = np.zeros(len(kinds), np.int64), np.zeros(len(kinds), np.int64)
    for amap, mask, kind in zip(maps, masks, defect_types, strict=True):
        column, truth = kinds.index(kind), TruthRegions.of(mask)
        truths[column] += len(truth.area) - 1
        truth_pixels[column] += int(mask.sum())
        components = FloorComponents(np.asarray(amap, dtype=np.float32))
        for row, seg in enumerate(grid):
            predicted = ng_mask(amap, seg, components)
            found[row, column] += truth.hits(predicted)[0]
            overlap[row, column] += int((predicted & mask).sum())
            predicted_pixels[row, column] += int(predicted.sum())
    scores = np.zeros((len(grid), len(kinds)))
    for row, column in np.ndindex(scores.shape):
        total = int(truths[column])
        recall = int(found[row, column]) / total if total else 1.0
        pixels = int(predicted_pixels[row, column] + truth_pixels[column])
        f1 = 2 * int(overlap[row, column]) / max(pixels, 1)
        scores[row, column] = (recall + f1) / 2
    with_region = np.zeros(len(grid), np.int64)  # good images given a region
    for amap in good_maps:
        components = FloorComponents(np.asarray(amap, dtype=np.float32))
        with_region += [segment(amap, seg, components).any() for seg in grid]
    penalty = GOOD_REGION_PENALTY * (with_region / max(len(good_maps), 1))
    return scores, penalty


def held_out_score(scores: np.ndarray, penalty: np.ndarray) -> float:
    """Leave-one-kind-out: per kind (a column of ``kind_scores``), the candidate with the best
    mean over the other kinds (ties: the earlier), scored on that kind; their mean."""
    kinds = scores.shape[1]
    picks = [int(np.argmax(np.delete(scores, k, 1).mean(1) - penalty)) for k in range(kinds)]
    return float(np.mean([scores[c, k] - penalty[c] for k, c in enumerate(picks)]))


def families(grid: Sequence[Segmentation]) -> dict[str, np.ndarray]:
    """Nested candidate families of ``grid``, simplest first: indices into it."""
    every = np.arange(len(grid))
    return {
        "global 0.5": every[[s == Segmentation.global_threshold(0.5) for s in grid]],
        "global": every[[s.kind == "global" for s in grid]],
        "grid": every,
    }


def choose(grid: Sequence[Segmentation], scores: np.ndarray, penalty: np.ndarray) -> Segmentation:
    """The candidate of the family with the best ``held_out_score`` (ties: the simpler; one kind:
    the whole grid) that scores best on every kind (ties: the earlier). ``scores``, ``penalty``:
    ``kind_scores`` of ``grid``."""
    nested = [f for f in families(grid).values() if len(f)]
    if scores.shape[1] > 1:  # max keeps the first (simpler) family on ties
        nested = [max(nested, key=lambda f: held_out_score(scores[f], penalty[f]))]
    family = nested[-1]
    return grid[family[int(np.argmax(scores[family].mean(1) - penalty[family]))]]


def select_segmentation(
    maps: np.ndarray,
    masks: np.ndarray,
    defect_types: Sequence[str],
    good_maps: np.ndarray,
    ng: np.ndarray | None = None,
) -> Segmentation:
    """The product's segmentation, chosen on the normalised (M, H, W) ``maps`` of its
    defective validation images with their ``masks`` and the ``good_maps``; ``ng`` (M,): those
    judged NG, the only ones given a faint peak's region (None: all). No defect: global 0.5."""
    maps = np.asarray(maps, dtype=np.float32)
    masks = np.asarray(masks).astype(bool)
    good_maps = np.asarray(good_maps, dtype=np.float32).reshape(-1, *maps.shape[1:])
    if maps.ndim != 3 or masks.shape != maps.shape or len(defect_types) != len(maps):
        raise ValueError(
            f"select_segmentation needs maps and masks (M, H, W) and M defect types; got "
            f"{maps.shape}, {masks.shape}, {len(defect_types)} types"
        )
    if not len(maps) or not masks.any():
        return Segmentation.global_threshold(0.5)
    grid = candidates(good_maps, fallback=maps[~masks])
    best = choose(grid, *kind_scores(maps, masks, defect_types, good_maps, grid))
    judged = np.ones(len(maps), bool) if ng is None else np.asarray(ng, dtype=bool)
    faint = judged & (maps.reshape(len(maps), -1).max(axis=1) <= best.floor)
    if not faint.any():
        return best
    levels = [replace(best, peak_level=level) for level in PEAK_LEVELS]
    types = [t for t, keep in zip(defect_types, faint, strict=True) if keep]
    scores, penalty = kind_scores(maps[faint], masks[faint], types, good_maps, levels)
    return levels[int(np.argmax(scores.mean(1) - penalty))]


def _level(value: float) -> float:
    """A map level rounded for readable metadata, kept inside (0, 1)."""
    return float(np.clip(round(float(value), 4), 0.001, 0.999))
