"""Connected defect regions from a binary mask and its anomaly map."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import cv2
import numpy as np

from inspection.core.types import DefectRegion

REGION_OVERLAP = 0.3
"""A ground-truth defect counts as found when the predicted mask covers this share of it."""


def extract_regions(
    anomaly_map: np.ndarray, mask: np.ndarray, *, min_area: int = 1
) -> tuple[DefectRegion, ...]:
    """Regions of ``mask`` ((H, W) bool) scored by ``anomaly_map`` ((H, W) float32), largest first,
    each measured on its own pixels only (``connectedComponentsWithStats`` would spend most of
    its time on statistics of every pixel)."""
    if mask.shape != anomaly_map.shape:
        raise ValueError(f"mask shape {mask.shape} != anomaly_map shape {anomaly_map.shape}")
    pixels = mask.astype(np.uint8)
    count, labels = cv2.connectedComponents(pixels, connectivity=8)
    if count <= 1:
        return ()
    # row-major pixel order (each region's first maximum is its peak); flatnonzero on a bool
    # view is far cheaper than np.nonzero on the 2-D mask
    flat = np.flatnonzero(pixels.view(bool))
    owners = labels.reshape(-1)[flat]
    order = np.argsort(owners, kind="stable")
    flat = flat[order]
    ys, xs = np.divmod(flat, mask.shape[1])
    values = np.ascontiguousarray(anomaly_map).reshape(-1)[flat]
    bounds = np.searchsorted(owners[order], np.arange(1, count + 1))
    regions = []
    for begin, end in pairwise(bounds):
        area = int(end - begin)
        if area < min_area:
            continue
        ry, rx, scores = ys[begin:end], xs[begin:end], values[begin:end]
        peak = int(np.argmax(scores))
        length, width = _extent(rx, ry)
        regions.append(
            DefectRegion(
                box=(int(rx.min()), int(ry.min()), int(rx.max()) + 1, int(ry.max()) + 1),
                area=area,
                peak=(int(rx[peak]), int(ry[peak])),
                max_score=float(scores[peak]),
                mean_score=float(scores.mean()),
                length=length,
                width=width,
            )
        )
    return tuple(sorted(regions, key=lambda r: r.area, reverse=True))


def _extent(xs: np.ndarray, ys: np.ndarray) -> tuple[float, float]:
    """(length, width) in pixels of the region with pixel coordinates ``xs``, ``ys`` (row-major
    order): the sides of the minimum-area rotated rectangle around the pixel centres, plus one
    pixel each (a single pixel measures 1 x 1, a 10-pixel horizontal line 10 x 1)."""
    if len(xs) == 1:
        return 1.0, 1.0
    (_, _), (a, b), _ = cv2.minAreaRect(row_ends(xs, ys))
    return float(max(a, b)) + 1.0, float(min(a, b)) + 1.0


def row_ends(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """(P, 2) float32 (x, y) of the first and last pixel of each row of a region given in
    row-major order: the only pixels that can be corners of its convex hull, hence of its
    minimum-area rectangle (``cv2.minAreaRect`` of them equals that of every pixel, at a
    fraction of the cost on a large region)."""
    new_row = np.flatnonzero(np.diff(ys)) + 1
    ends = np.unique(np.r_[0, new_row, new_row - 1, len(ys) - 1])
    return np.column_stack([xs[ends], ys[ends]]).astype(np.float32)


def region_hits(
    predicted: np.ndarray, truth: np.ndarray, min_overlap: float = REGION_OVERLAP
) -> tuple[int, int]:
    """(found, total) ground-truth components of one (H, W) bool ``truth`` mask; a component
    is found when the (H, W) bool ``predicted`` mask covers at least ``min_overlap`` of it."""
    if not truth.any():
        return 0, 0
    return TruthRegions.of(truth).hits(predicted, min_overlap)


@dataclass(frozen=True)
class TruthRegions:
    """The 8-connected components of one (H, W) bool ground-truth mask, labelled once for all
    the predictions scored against it (``region_hits``)."""

    truth: np.ndarray
    labels: np.ndarray
    """(H, W) int32 component of each pixel, 0 outside the truth."""
    area: np.ndarray
    """(components + 1,) pixels of each label, the background's first."""

    @classmethod
    def of(cls, truth: np.ndarray) -> TruthRegions:
        """The components of ``truth`` ((H, W) bool), 8-connected (``cv2.connectedComponents``)."""
        count, labels = cv2.connectedComponents(truth.astype(np.uint8), connectivity=8)
        return cls(truth, labels, np.bincount(labels.reshape(-1), minlength=count))

    def hits(self, predicted: np.ndarray, min_overlap: float = REGION_OVERLAP) -> tuple[int, int]:
        """``region_hits(predicted, truth, min_overlap)``."""
        count = len(self.area)
        covered = np.bincount(self.labels[predicted & self.truth], minlength=count)
        found = covered[1:] >= min_overlap * self.area[1:]
        return int(found.sum()), count - 1
