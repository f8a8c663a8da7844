"""Guard rails: a refined region mask replaces the raw one only when it is plausible."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

from inspection.core.regions import extract_regions
from inspection.core.types import InspectionResult
from inspection.refine.config import GuardConfig
from inspection.refine.prompts import RegionPrompt


@dataclass(frozen=True)
class GuardDecision:
    """``accepted``: use ``mask`` ((H, W) bool, clipped to the neighbourhood) for the region;
    otherwise keep the raw region. ``reason`` is "ok" or why the candidate was rejected."""

    accepted: bool
    reason: str
    mask: np.ndarray | None = None


def grown_box(region: np.ndarray, pad_px: int, pad_fraction: float) -> tuple[slice, slice, int]:
    """(rows, cols) of a non-empty ``region``'s bounding box grown by ``pad = max(pad_px,
    pad_fraction * its longest side)`` on every side (clipped to the image), and ``pad``."""
    ys, xs = np.nonzero(region)
    side = max(int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
    pad = max(pad_px, round(pad_fraction * side))
    height, width = region.shape
    rows = slice(max(0, int(ys.min()) - pad), min(height, int(ys.max()) + 1 + pad))
    cols = slice(max(0, int(xs.min()) - pad), min(width, int(xs.max()) + 1 + pad))
    return rows, cols, pad


def neighbourhood(region: np.ndarray, config: GuardConfig) -> np.ndarray:
    """(H, W) bool: ``region`` dilated by a disc of max(neighbourhood_px, fraction * longest box
    side), as a distance transform inside the grown box: the cost follows the region's size."""
    if not region.any():
        return region.copy()
    rows, cols, radius = grown_box(region, config.neighbourhood_px, config.neighbourhood_fraction)
    outside = np.ascontiguousarray(~region[rows, cols], dtype=np.uint8)
    distance = cv2.distanceTransform(outside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    out = np.zeros_like(region, dtype=bool)
    out[rows, cols] = distance <= radius
    return out


def judge(
    region: np.ndarray,
    candidate: np.ndarray,
    config: GuardConfig,
    predicted_iou: float | None = None,
) -> GuardDecision:
    """Accept or reject ``candidate`` ((H, W) bool) as the refinement of ``region`` ((H, W)
    bool): low predicted IoU, empty, too much outside the neighbourhood, too small or large
    versus the raw region or too large versus the image reject it, in that order."""
    if predicted_iou is not None and predicted_iou < config.min_predicted_iou:
        return GuardDecision(
            False, f"predicted IoU {predicted_iou:.2f} < {config.min_predicted_iou}"
        )
    total = int(candidate.sum())
    if total == 0:
        return GuardDecision(False, "empty mask")
    inside = candidate & neighbourhood(region, config)
    outside_fraction = 1.0 - int(inside.sum()) / total
    if outside_fraction > config.max_outside_fraction:
        return GuardDecision(
            False, f"{outside_fraction:.0%} of the mask leaves the region's neighbourhood"
        )
    area, raw_area = int(inside.sum()), int(region.sum())
    ratio = area / max(raw_area, 1)
    if ratio < config.min_area_ratio:
        return GuardDecision(False, f"area ratio {ratio:.2f} vs raw < {config.min_area_ratio}")
    if ratio > config.max_area_ratio:
        return GuardDecision(False, f"area ratio {ratio:.2f} vs raw > {config.max_area_ratio}")
    image_fraction = area / region.size
    if image_fraction > config.max_image_fraction:
        return GuardDecision(
            False,
            f"mask covers {image_fraction:.0%} of the image > {config.max_image_fraction:.0%}",
        )
    return GuardDecision(True, "ok", inside)


def check_image(image: np.ndarray, result: InspectionResult) -> None:
    """``ValueError`` unless ``image`` is the (H, W, 3) uint8 RGB image of ``result``'s map."""
    expected = (*result.anomaly_map.shape, 3)
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.shape != expected:
        raise ValueError(
            f"image must be a {expected} uint8 RGB array matching the anomaly map, got "
            f"{getattr(image, 'shape', type(image))} {getattr(image, 'dtype', '')}"
        )


@dataclass(frozen=True)
class Candidate:
    """A refiner's proposal for one region: (H, W) bool mask and optional predicted IoU."""

    mask: np.ndarray
    predicted_iou: float | None = None


def merge(
    result: InspectionResult,
    prompts: tuple[RegionPrompt, ...],
    candidates: list[Candidate | None],
    config: GuardConfig,
    source: str,
    timings: dict[str, float] | None = None,
) -> tuple[InspectionResult, list[GuardDecision | None]]:
    """Replace each region's raw pixels by its accepted candidate (``None``: raw); ``mask_source``
    is ``source``, "raw" or "<source>+raw" as all, none or some were refined."""
    decisions = [
        None if cand is None else judge(p.region, cand.mask, config, cand.predicted_iou)
        for p, cand in zip(prompts, candidates, strict=True)
    ]
    accepted = [(p, d) for p, d in zip(prompts, decisions, strict=True) if d and d.accepted]
    mask = result.mask.copy()
    for prompt, _ in accepted:
        mask &= ~prompt.region
    for _, decision in accepted:
        mask |= decision.mask
    covered = np.zeros_like(result.mask)
    for prompt in prompts:
        covered |= prompt.region
    some_raw = len(accepted) < len(prompts) or bool((result.mask & ~covered).any())
    mask_source = "raw" if not accepted else (f"{source}+raw" if some_raw else source)
    counts = {"refine_regions": float(len(prompts)), "refine_accepted": float(len(accepted))}
    refined = dataclasses.replace(
        result, mask=mask, mask_source=mask_source,
        regions=extract_regions(result.anomaly_map, mask) if accepted else result.regions,
        timings_ms={**result.timings_ms, **(timings or {}), **counts},
    )  # fmt: skip
    return refined, decisions
