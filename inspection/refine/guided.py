"""The guided refiner: each NG region redrawn on the anomaly map sharpened by the image itself.

PatchCore's blurred patch map makes a thin crack a blob; the guided filter (He, Sun & Tang,
TPAMI 2013) rewrites it locally as ``q = a * I + b`` of the grey image, so inside a blob it
follows the image's edges. Each region is cut again on it; the guard rails judge the cut.
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from inspection.core.types import InspectionResult
from inspection.refine.config import RefineConfig
from inspection.refine.guards import Candidate, check_image, merge
from inspection.refine.prompts import prompts_from_map


def grey_guide(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) float32 grey guide in [0, 1] at ``size`` (h, w) from an (H, W, 3) uint8 image."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"guide image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if grey.shape != size:
        grey = cv2.resize(grey, size[::-1], interpolation=cv2.INTER_AREA)
    return grey.astype(np.float32) / np.float32(255.0)


def guided_map(anomaly_map: np.ndarray, guide: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """(H, W) float32: ``anomaly_map`` (H, W, raw or normalised) filtered with ``guide`` (H, W)
    float32 in [0, 1] over ``(2 radius + 1)^2`` windows (``radius`` >= 1 px, ``eps`` > 0); in the
    input's range up to a small overshoot at strong edges."""
    if anomaly_map.shape != guide.shape:
        raise ValueError(f"guide shape {guide.shape} != anomaly map shape {anomaly_map.shape}")
    p = np.asarray(anomaly_map, dtype=np.float32)
    i = np.asarray(guide, dtype=np.float32)
    side = 2 * radius + 1

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, (side, side), borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = box(i), box(p)
    a = (box(i * p) - mean_i * mean_p) / (box(i * i) - mean_i * mean_i + np.float32(eps))
    b = mean_p - a * mean_i
    return box(a) * i + box(b)


class GuidedRefiner:
    """A ``MaskRefiner`` needing no weights: every region of an NG result cut again, at the
    level it was segmented at, on the guided-filtered map; then the guard rails."""

    name = "guided"

    def __init__(self, config: RefineConfig) -> None:
        self.config = config

    def refine_result(self, image: np.ndarray, result: InspectionResult) -> InspectionResult:
        """Refined copy of an NG ``result``; OK results come back unchanged."""
        if not result.is_defective:
            return result
        check_image(image, result)
        amap = result.anomaly_map
        start = time.perf_counter()
        guide = grey_guide(image, amap.shape)
        prompts = prompts_from_map(amap, result.mask, self.config.prompts)
        candidates = [Candidate(self._cut(amap, guide, p.region)) for p in prompts]
        timings = {"refine_ms": (time.perf_counter() - start) * 1e3}
        refined, _ = merge(result, prompts, candidates, self.config.guards, self.name, timings)
        return refined

    def _cut(self, amap: np.ndarray, guide: np.ndarray, region: np.ndarray) -> np.ndarray:
        """(H, W) bool: the region cut on the guided map at the level it was segmented at
        (possibly below the image threshold), raised ``relative_level`` of the way to its guided
        peak, within its neighbourhood plus the filter's radius (cost follows the region)."""
        config, guards = self.config.guided, self.config.guards
        radius = max(1, round(config.radius_fraction * min(amap.shape)))
        ys, xs = np.nonzero(region)
        side = max(int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1)
        grow = radius + max(guards.neighbourhood_px, round(guards.neighbourhood_fraction * side))
        rows = slice(max(0, int(ys.min()) - grow), int(ys.max()) + 1 + grow)
        cols = slice(max(0, int(xs.min()) - grow), int(xs.max()) + 1 + grow)
        sharp = guided_map(amap[rows, cols], guide[rows, cols], radius, config.eps)
        level = float(amap[region].min())
        peak = float(sharp[region[rows, cols]].max())
        cut = np.zeros_like(region)
        cut[rows, cols] = sharp >= level + config.relative_level * max(peak - level, 0.0)
        return cut
