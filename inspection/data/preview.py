"""Contact sheets: a grid of good and defective images per dataset, with mask outlines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from inspection.core.errors import ImageDecodeError
from inspection.core.images import DEFAULT_SOURCE_BITS, read_image, read_mask
from inspection.data.dataset import Dataset, Sample

OUTLINE_RGB = (255, 40, 40)
LABEL_HEIGHT = 18


def contact_sheet(
    datasets: Sequence[Dataset],
    *,
    n_good: int = 2,
    tile: int = 192,
    image_bits: Mapping[str, int] | None = None,
    image_ranges: Mapping[str, tuple[float, float]] | None = None,
) -> np.ndarray:
    """One uint8 RGB row per dataset: ``n_good`` test-good images then one per defect type
    (unreadable: grey), read at each product's ``image_bits`` and ``image_range`` by name."""
    bits, ranges = image_bits or {}, image_ranges or {}
    rows = [
        _row(d, n_good, tile, (bits.get(d.name, DEFAULT_SOURCE_BITS), ranges.get(d.name)))
        for d in datasets
    ]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows, axis=0)


def _row(
    dataset: Dataset, n_good: int, tile: int, reading: tuple[int, tuple[float, float] | None]
) -> np.ndarray:
    picks: list[Sample] = [s for s in dataset.test_samples if s.label == 0][:n_good]
    for defect in dataset.defect_types:
        picks += [s for s in dataset.test_samples if s.defect_type == defect][:1]
    tiles = [_tile(s, tile, f"{dataset.name}/{s.defect_type}", reading) for s in picks]
    return np.concatenate(tiles, axis=1)


def _tile(
    sample: Sample, tile: int, label: str, reading: tuple[int, tuple[float, float] | None]
) -> np.ndarray:
    try:
        image = read_image(sample.path, bits=reading[0], value_range=reading[1])
        image = cv2.resize(image, (tile, tile), interpolation=cv2.INTER_AREA)
    except ImageDecodeError:
        image = np.full((tile, tile, 3), 128, np.uint8)
    if sample.mask_path is not None:
        try:
            mask = read_mask(sample.mask_path)
        except ImageDecodeError:
            mask = None
        if mask is not None:
            small = cv2.resize(mask.astype(np.uint8), (tile, tile), interpolation=cv2.INTER_NEAREST)
            # outline a few pixels outside the defect so thin defects stay visible
            grow = max(2, tile // 64)
            small = cv2.dilate(small, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
            contours, _ = cv2.findContours(small, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            image = np.ascontiguousarray(image)
            cv2.drawContours(image, contours, -1, OUTLINE_RGB, 1)
    caption = np.full((LABEL_HEIGHT, tile, 3), 255, np.uint8)
    cv2.putText(caption, label, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    border = np.full((tile + LABEL_HEIGHT, 2, 3), 255, np.uint8)
    return np.concatenate([np.concatenate([image, caption], axis=0), border], axis=1)
