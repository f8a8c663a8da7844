"""``extract_regions`` (one labelling pass, statistics from region pixels only) matches the
direct per-region computation from OpenCV's component statistics, ties included."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspection.core.regions import extract_regions, row_ends
from inspection.core.types import DefectRegion


def _reference(anomaly_map: np.ndarray, mask: np.ndarray, min_area: int) -> list[DefectRegion]:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), 8)
    regions = []
    for label in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[label])
        if area < min_area:
            continue
        inside = labels[y : y + h, x : x + w] == label
        crop = anomaly_map[y : y + h, x : x + w]
        peak_y, peak_x = np.unravel_index(
            int(np.argmax(np.where(inside, crop, -np.inf))), crop.shape
        )
        values = crop[inside]
        points = np.argwhere(labels == label)[:, ::-1].astype(np.float32)
        sides = cv2.minAreaRect(points)[1] if area > 1 else (0.0, 0.0)
        regions.append(
            DefectRegion(
                box=(x, y, x + w, y + h),
                area=area,
                peak=(x + int(peak_x), y + int(peak_y)),
                max_score=float(values.max()),
                mean_score=float(values.mean()),
                length=float(max(sides)) + 1.0,
                width=float(min(sides)) + 1.0,
            )
        )
    return sorted(regions, key=lambda r: r.area, reverse=True)


@pytest.mark.parametrize("seed", range(6))
def test_regions_match_the_component_statistics(seed: int) -> None:
    rng = np.random.default_rng(seed)
    height, width = (int(v) for v in rng.integers(1, 120, 2))
    blurred = cv2.GaussianBlur(rng.random((height, width)).astype(np.float32), (0, 0), 2.0)
    amap = np.round(blurred * 8) / 8 if seed % 2 else blurred  # rounded maps: tied peaks
    for level in (0.5, 0.9, 0.99):
        mask = amap >= np.quantile(amap, level)
        for min_area in (1, 4):
            got = extract_regions(amap, mask, min_area=min_area)
            assert list(got) == _reference(amap, mask, min_area)


def test_empty_mask_has_no_regions() -> None:
    assert extract_regions(np.ones((4, 5), np.float32), np.zeros((4, 5), bool)) == ()


@pytest.mark.parametrize("seed", range(4))
def test_row_ends_keep_the_minimum_area_rectangle(seed: int) -> None:
    """Large, ragged regions (blobs with holes, rings, diagonal strokes): the rows' end pixels
    give ``cv2.minAreaRect`` exactly what every pixel gives, at two points a row at most."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.random((256, 256)).astype(np.float32), (0, 0), 6.0)
    stroke = np.zeros((256, 256), np.uint8)
    cv2.line(stroke, (10, 200), (230, 30 + 20 * seed), 1, thickness=3 + seed)
    for mask in (noise >= np.quantile(noise, 0.6), stroke.astype(bool)):
        count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        for label in range(1, count):
            ys, xs = np.nonzero(labels == label)  # row-major
            if len(xs) < 2:
                continue
            ends = row_ends(xs, ys)
            assert len(ends) <= 2 * len(np.unique(ys))
            every = np.column_stack([xs, ys]).astype(np.float32)
            assert cv2.minAreaRect(ends) == cv2.minAreaRect(every)
