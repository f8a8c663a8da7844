"""A pixel budget for measuring refiners, whose cost grows faster than the pixels: over it, the
image, judged result and ground truth are resized to a longer side of ``max_side``; masks by
"any coverage" (a small pixel is set when any pixel under it is), so thin defects stay."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from inspection.core.regions import extract_regions
from inspection.core.types import InspectionResult


def budget_size(shape: tuple[int, ...], max_side: int | None) -> tuple[int, int]:
    """(H, W) of an image of ``shape`` resized to a longer side of at most ``max_side``."""
    height, width = shape[:2]
    if max_side is None or max(height, width) <= max_side:
        return height, width
    if max_side < 1:
        raise ValueError(f"max_side must be >= 1 (or None), got {max_side}")
    scale = max_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def shrink_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) bool: ``mask`` ((H, W) bool) resized by any coverage."""
    if mask.shape == size:
        return mask
    covered = cv2.resize(mask.astype(np.float32), size[::-1], interpolation=cv2.INTER_AREA)
    return covered > 0


def shrink_result(
    image: np.ndarray, result: InspectionResult, size: tuple[int, int]
) -> tuple[np.ndarray, InspectionResult]:
    """(image (h, w, 3) uint8, result at (h, w)) for an image (H, W, 3) uint8 and its result:
    the map area-averaged, an NG mask resized by any coverage and its regions re-extracted (no
    minimum area: the NG stands as judged); score, threshold and verdict unchanged."""
    if image.shape[:2] == size:
        return image, result
    dsize = size[::-1]
    small = cv2.resize(image, dsize, interpolation=cv2.INTER_AREA)
    amap = cv2.resize(result.anomaly_map, dsize, interpolation=cv2.INTER_AREA)
    mask = shrink_mask(result.mask, size)
    ng = result.is_defective
    return small, dataclasses.replace(
        result, anomaly_map=amap.astype(np.float32), mask=mask, candidates=(),
        regions=extract_regions(amap, mask) if ng else (),
        min_defect_area=None if ng else result.min_defect_area,
    )  # fmt: skip
