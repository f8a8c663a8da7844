"""Weight-free refiners: GrabCut or random walker seeded from the anomaly map."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import cv2
import numpy as np
from skimage.segmentation import random_walker

from inspection.core.types import InspectionResult
from inspection.refine.config import ClassicalConfig, RefineConfig
from inspection.refine.guards import Candidate, check_image, grown_box, merge
from inspection.refine.prompts import RegionPrompt, prompts_from_map

log = logging.getLogger(__name__)

SURE_BG, SURE_FG, PROBABLE_BG, PROBABLE_FG = cv2.GC_BGD, cv2.GC_FGD, cv2.GC_PR_BGD, cv2.GC_PR_FGD


def crop_window(region: np.ndarray, config: ClassicalConfig) -> tuple[slice, slice]:
    """(rows, cols) slices of the region's bounding box grown by the classical margin."""
    rows, cols, _ = grown_box(region, config.margin_px, config.margin_fraction)
    return rows, cols


def seed_labels(
    anomaly_map: np.ndarray, region: np.ndarray, threshold: float, config: ClassicalConfig
) -> np.ndarray:
    """GrabCut labels (uint8, the inputs' shape) around one region, as ``ClassicalConfig``
    defines them: sure and probable foreground inside it, probable and sure background outside."""
    labels = np.full(anomaly_map.shape, SURE_BG, dtype=np.uint8)
    labels[anomaly_map >= config.sure_bg_fraction * threshold] = PROBABLE_BG
    labels[region] = PROBABLE_FG
    peak = float(anomaly_map[region].max()) if region.any() else threshold
    labels[region & (anomaly_map >= threshold + config.sure_fg_level * (peak - threshold))] = (
        SURE_FG
    )
    return labels


def grabcut_region(
    image: np.ndarray,
    anomaly_map: np.ndarray,
    region: np.ndarray,
    threshold: float,
    config: ClassicalConfig,
) -> np.ndarray | None:
    """(H, W) bool GrabCut segmentation of one region on its (shrunk) crop window, or None when
    seeds are one-sided."""
    rows, cols = crop_window(region, config)
    labels = seed_labels(anomaly_map[rows, cols], region[rows, cols], threshold, config)
    if not _two_sided(labels):
        return None
    crop, small = bounded_crop(image[rows, cols], labels, config.max_crop_pixels)
    if not _two_sided(small):
        return None
    cv2.setRNGSeed(config.seed)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(crop, small, None, bgd, fgd, config.grabcut_iterations, cv2.GC_INIT_WITH_MASK)
    return _pasted(region.shape, rows, cols, (small == SURE_FG) | (small == PROBABLE_FG))


def random_walker_region(
    image: np.ndarray,
    anomaly_map: np.ndarray,
    region: np.ndarray,
    threshold: float,
    config: ClassicalConfig,
) -> np.ndarray | None:
    """(H, W) bool random-walker segmentation from the same seeds (probable = unlabelled),
    on the crop window shrunk to ``config.max_crop_pixels`` when larger."""
    rows, cols = crop_window(region, config)
    labels = seed_labels(anomaly_map[rows, cols], region[rows, cols], threshold, config)
    crop, labels = bounded_crop(image[rows, cols], labels, config.max_crop_pixels)
    if not _two_sided(labels) or not (labels == SURE_FG).any() or not (labels == SURE_BG).any():
        return None
    markers = np.zeros(labels.shape, dtype=np.int32)
    markers[labels == SURE_BG] = 1
    markers[labels == SURE_FG] = 2
    pixels = crop.astype(np.float32) / 255.0
    beta = config.random_walker_beta
    walked = random_walker(pixels, markers, beta=beta, mode="bf", channel_axis=-1)
    return _pasted(region.shape, rows, cols, walked == 2)


def bounded_crop(
    crop: np.ndarray, labels: np.ndarray, max_pixels: int
) -> tuple[np.ndarray, np.ndarray]:
    """(crop (h, w, 3) uint8 contiguous, labels (h, w) uint8) shrunk (area / nearest) so that
    h * w <= ``max_pixels``; unchanged when already within it."""
    height, width = labels.shape
    if height * width <= max_pixels:
        return np.ascontiguousarray(crop), labels
    scale = (max_pixels / (height * width)) ** 0.5
    size = (max(1, int(width * scale)), max(1, int(height * scale)))
    small = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    return small, cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)


def _pasted(shape: tuple[int, ...], rows: slice, cols: slice, crop_mask: np.ndarray) -> np.ndarray:
    """(H, W) bool with ``crop_mask`` (resized to the window, bilinear then >= 0.5) at the
    window ``rows, cols``."""
    out = np.zeros(shape, dtype=bool)
    window = out[rows, cols]
    if crop_mask.shape != window.shape:
        grown = cv2.resize(
            crop_mask.astype(np.float32), window.shape[::-1], interpolation=cv2.INTER_LINEAR
        )
        crop_mask = grown >= 0.5
    out[rows, cols] = crop_mask
    return out


def _two_sided(labels: np.ndarray) -> bool:
    fg = np.isin(labels, (SURE_FG, PROBABLE_FG)).any()
    bg = np.isin(labels, (SURE_BG, PROBABLE_BG)).any()
    return bool(fg and bg)


SegmentFn = Callable[
    [np.ndarray, np.ndarray, np.ndarray, float, ClassicalConfig], "np.ndarray | None"
]
CLASSICAL_METHODS: dict[str, SegmentFn] = {
    "grabcut": grabcut_region,
    "random_walker": random_walker_region,
}


class ClassicalRefiner:
    """A ``MaskRefiner`` needing no weights: per region, GrabCut or random walker on the
    image, seeded from the anomaly map, then the guard rails."""

    def __init__(self, method: str, config: RefineConfig) -> None:
        if method not in CLASSICAL_METHODS:
            raise ValueError(
                f"unknown classical method {method!r}; valid: {', '.join(sorted(CLASSICAL_METHODS))}"
            )
        self.name = method
        self.config = config
        self._segment = CLASSICAL_METHODS[method]

    def refine_result(self, image: np.ndarray, result: InspectionResult) -> InspectionResult:
        """Refined copy of an NG ``result``; OK results come back unchanged."""
        if not result.is_defective:
            return result
        check_image(image, result)
        start = time.perf_counter()
        prompts = prompts_from_map(result.anomaly_map, result.mask, self.config.prompts)
        candidates = [self._candidate(image, result, prompt) for prompt in prompts]
        timings = {"refine_ms": (time.perf_counter() - start) * 1e3}
        refined, _ = merge(result, prompts, candidates, self.config.guards, self.name, timings)
        return refined

    def _candidate(
        self, image: np.ndarray, result: InspectionResult, prompt: RegionPrompt
    ) -> Candidate | None:
        # the level the region was segmented at: regions of an adaptive segmentation (or the
        # peak region of a faint NG) may lie below the image threshold
        level = min(float(result.threshold), float(result.anomaly_map[prompt.region].min()))
        mask = self._segment(image, result.anomaly_map, prompt.region, level, self.config.classical)
        return None if mask is None else Candidate(mask)
