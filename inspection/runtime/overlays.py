"""Overlay images for operators: anomaly heatmap blended on the part, mask contours, verdict."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from inspection.core.types import InspectionResult
from inspection.runtime.alignment import to_reference

_CONTOUR_RGB = (255, 255, 255)
_VERDICT_RGB = {"OK": (40, 200, 40), "NG": (230, 40, 40)}


def render_overlay(
    image: np.ndarray, result: InspectionResult, *, alpha: float = 0.45
) -> np.ndarray:
    """(H, W, 3) uint8 RGB camera image + its result -> (H, W, 3) uint8 RGB overlay.

    Drawn in the result's frame (``result.frame``): an aligned result's map, mask and regions
    lie in the reference frame, so the image is warped there first (the image the model
    judged). The anomaly map (0 blue .. 1 red) is blended with weight ``alpha``, mask
    contours are drawn in white and the verdict with its score is written top-left.
    """
    if image.shape[:2] != result.anomaly_map.shape:
        raise ValueError(
            f"image is {image.shape[:2]} but the result's map is {result.anomaly_map.shape}"
        )
    if result.alignment is not None:
        image = to_reference(image, result.alignment)
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
    origin = (4, int(16 * scale) + 4)
    cv2.putText(overlay, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 2)
    cv2.putText(
        overlay,
        text,
        origin,
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        _VERDICT_RGB[result.verdict],
        thickness,
    )
    return overlay


def write_rgb_png(path: str | Path, image: np.ndarray) -> Path:
    """Write an (H, W, 3) uint8 RGB array as PNG, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path
