"""Regions of interest (torch-free): include/exclude polygons -> a boolean mask -> masked outputs.

Inside = (union of ``include``, or everything) minus (union of ``exclude``), in reference-image
pixels scaled to any size. ``apply_roi`` zeroes the map outside and scales the score by
max(map inside) / max(map), so a peak outside raises no NG; training skips the outside too.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from inspection.core.config import to_mapping

Point = tuple[float, float]
Polygon = tuple[Point, ...]
_SHIFT = 4  # fixed-point bits for sub-pixel polygon vertices in cv2.fillPoly


@dataclass(frozen=True)
class RoiSpec:
    """Polygons of (x, y) vertices on a ``reference_size`` (h, w) image; no include: everything."""

    reference_size: tuple[int, int]
    include: tuple[Polygon, ...] = ()
    exclude: tuple[Polygon, ...] = ()

    def __post_init__(self) -> None:
        height, width = self.reference_size
        if height < 1 or width < 1:
            raise ValueError(
                f"reference_size must be (height, width) >= 1, got {self.reference_size}"
            )
        for name in ("include", "exclude"):
            for i, polygon in enumerate(getattr(self, name)):
                if len(polygon) < 3:
                    raise ValueError(
                        f"{name}[{i}]: a polygon needs at least 3 points, got {len(polygon)}"
                    )
                for x, y in polygon:
                    if not (-width <= x <= 2 * width and -height <= y <= 2 * height):
                        raise ValueError(
                            f"{name}[{i}]: point ({x}, {y}) lies far outside the "
                            f"{width}x{height} reference image"
                        )
        if not self.mask(*self.reference_size).any():
            raise ValueError("the ROI is empty: the exclude polygons cover every included pixel")

    def mask(self, height: int, width: int) -> np.ndarray:
        """(height, width) bool: True inside the ROI (read-only, cached per size)."""
        return _mask(self, int(height), int(width))

    def to_mapping(self) -> dict:
        return to_mapping(self)


@lru_cache(maxsize=16)
def _mask(spec: RoiSpec, height: int, width: int) -> np.ndarray:
    scale = np.asarray((width / spec.reference_size[1], height / spec.reference_size[0]))

    def polygons(group: tuple[Polygon, ...]) -> list[np.ndarray]:
        return [np.rint(np.asarray(p) * scale * (1 << _SHIFT)).astype(np.int32) for p in group]

    canvas = np.zeros((height, width), np.uint8)
    if spec.include:
        cv2.fillPoly(canvas, polygons(spec.include), 1, cv2.LINE_8, shift=_SHIFT)
    else:
        canvas[:] = 1
    if spec.exclude:
        cv2.fillPoly(canvas, polygons(spec.exclude), 0, cv2.LINE_8, shift=_SHIFT)
    mask = canvas.astype(bool)
    mask.setflags(write=False)
    return mask


@dataclass(frozen=True)
class RoiTraining:
    """How a version's training used its product's ROI (``roi``; an export refuses another):
    ``inside_fraction`` of the input pixels; PatchCore patches kept of all (None for STFPM,
    whose loss ignores the outside); tiles with an ROI pixel of all (None: not tiled)."""

    roi: RoiSpec
    inside_fraction: float
    patches_kept: int | None = None
    patches_total: int | None = None
    tiles_kept: int | None = None
    tiles_total: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.inside_fraction <= 1.0:
            raise ValueError(f"inside_fraction must be in [0, 1], got {self.inside_fraction}")
        for kept, total in (
            (self.patches_kept, self.patches_total),
            (self.tiles_kept, self.tiles_total),
        ):
            if (kept is None) != (total is None) or (total is not None and not 0 <= kept <= total):
                raise ValueError(
                    f"kept/total counts must be 0 <= kept <= total, got {kept}/{total}"
                )

    def describe(self) -> str:
        """One line for logs and reports."""
        parts = [f"{self.inside_fraction:.0%} of the training pixels inside the ROI"]
        if self.tiles_total is not None:
            parts.append(f"{self.tiles_kept} of {self.tiles_total} tiles")
        if self.patches_total is not None:
            parts.append(f"{self.patches_kept} of {self.patches_total} patches")
        return ", ".join(parts)


def apply_roi(raw_score: float, raw_map: np.ndarray, roi: RoiSpec) -> tuple[float, np.ndarray]:
    """Mask one raw output: ``raw_map`` ((h, w) float32, >= 0) is zeroed outside the ROI and
    ``raw_score`` scaled by (max of the map inside) / (max of the map); see the module doc."""
    if raw_map.ndim != 2:
        raise ValueError(f"raw_map must be (h, w), got shape {raw_map.shape}")
    inside = roi.mask(*raw_map.shape)
    peak = float(raw_map.max())
    masked = np.where(inside, raw_map, 0.0).astype(np.float32)
    if peak <= 0.0:
        return float(raw_score), masked
    share = max(float(masked.max()), 0.0) / peak
    return float(raw_score) * share, masked


def apply_roi_batch(
    raw_scores: np.ndarray, raw_maps: np.ndarray, roi: RoiSpec | None
) -> tuple[np.ndarray, np.ndarray]:
    """``apply_roi`` over (N,) scores and (N, h, w) maps (``roi`` None: unchanged)."""
    if roi is None:
        return raw_scores, raw_maps
    pairs = [apply_roi(float(s), m, roi) for s, m in zip(raw_scores, raw_maps, strict=True)]
    scores = np.asarray([s for s, _ in pairs], dtype=raw_scores.dtype)
    return scores, np.stack([m for _, m in pairs]).astype(raw_maps.dtype)


def clear_outside(anomaly_map: np.ndarray, roi: RoiSpec | None) -> np.ndarray:
    """A normalised (H, W) map set to 0 outside the ROI at its own resolution (the raw map was
    masked at model resolution; resizing it bleeds a few pixels over the ROI's edge)."""
    if roi is None:
        return anomaly_map
    return np.where(roi.mask(*anomaly_map.shape), anomaly_map, 0.0).astype(np.float32)
