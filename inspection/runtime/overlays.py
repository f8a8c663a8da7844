"""Overlay images for operators: anomaly heatmap blended on the part, mask contours, verdict."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from inspection.core.types import InspectionResult
from inspection.refine.budget import shrink_mask
from inspection.runtime.alignment import to_reference
from inspection.runtime.bounds import work_size

_CONTOUR_RGB = (255, 255, 255)
_VERDICT_RGB = {"OK": (40, 200, 40), "NG": (230, 40, 40)}


DEFAULT_OVERLAY_MAX_SIDE = 1024
"""Overlays are drawn at most this large (longer side): operators look at them on a screen."""


def render_overlay(
    image: np.ndarray,
    result: InspectionResult,
    *,
    alpha: float = 0.45,
    max_side: int = DEFAULT_OVERLAY_MAX_SIDE,
) -> np.ndarray:
    """RGB overlay of ``result`` on ``image`` (judged or full camera image; aligned results in
    the reference frame), at most ``max_side``: map blended at ``alpha``, mask contours,
    verdict and score top-left."""
    image, result = _bounded(image, result, max_side)
    heat = cv2.applyColorMap(
        np.clip(result.anomaly_map * 255.0, 0, 255).astype(np.uint8), cv2.COLORMAP_JET
    )
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
    overlay = cv2.addWeighted(image, 1.0 - alpha, heat, alpha, 0.0)
    contours, _ = cv2.findContours(
        result.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    thickness = max(1, round(min(image.shape[:2]) / 200))
    cv2.drawContours(overlay, contours, -1, _CONTOUR_RGB, thickness)
    scale = max(0.35, min(image.shape[:2]) / 400)
    text = f"{result.verdict} {result.score:.3f}"
    (_, height), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness + 2)
    origin = (4, height + 4 + thickness)  # the glyphs' top, outline included, inside the image
    for colour, width in (((0, 0, 0), thickness + 2), (_VERDICT_RGB[result.verdict], thickness)):
        cv2.putText(overlay, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, width)
    return overlay


def _bounded(
    image: np.ndarray, result: InspectionResult, max_side: int
) -> tuple[np.ndarray, InspectionResult]:
    shape = result.anomaly_map.shape
    if image.shape[:2] != shape:
        if result.camera_size is None or image.shape[:2] != tuple(result.camera_size):
            raise ValueError(f"image is {image.shape[:2]} but the result's map is {shape}")
        image = cv2.resize(image, shape[::-1], interpolation=cv2.INTER_AREA)
    if result.alignment is not None:
        image = to_reference(image, result.alignment)
    size = work_size(shape, max_side)
    if size == shape:
        return image, result
    small = dataclasses.replace(
        result,
        anomaly_map=cv2.resize(result.anomaly_map, size[::-1], interpolation=cv2.INTER_AREA),
        mask=shrink_mask(result.mask, size),
    )
    return cv2.resize(image, size[::-1], interpolation=cv2.INTER_AREA), small


def write_rgb_png(path: str | Path, image: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path
