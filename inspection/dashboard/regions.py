"""Defect regions a reviewer paints on the review page (``streamlit-drawable-canvas``).

The canvas starts from the latest review's painted region, else the model's judged mask, one
polygon per blob; the region saved with a ``defect`` review is what the canvas shows then
(drawn alpha at least half the paint's), resized to the image's own size.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from inspection.core.errors import ImageDecodeError
from inspection.core.images import defect_pixels, mask_levels
from inspection.store.store import Store

CANVAS_WIDTH = 512
BRUSH = 12
"""The brush's width (canvas pixels) the page starts with."""
PAINT_ALPHA = 0.5
PAINT_RGBA = f"rgba(255, 40, 40, {PAINT_ALPHA})"
_PAINTED_LEVEL = round(255 * PAINT_ALPHA / 2)
"""Drawn alpha (0-255) from which a canvas pixel counts as painted: half the paint's."""


def canvas_size(image_shape: tuple[int, ...], width: int = CANVAS_WIDTH) -> tuple[int, int]:
    height, image_width = image_shape[:2]
    return width, max(1, round(height * width / image_width))


def starting_region(store: Store, inspection_id: str, mask_sha: str | None) -> np.ndarray | None:
    """The latest painted region of any review, else the judged mask; None when neither is
    readable."""
    painted = next((r.region_sha for r in reversed(store.reviews_of(inspection_id))
                    if r.region_sha), None)  # fmt: skip
    for sha in (painted, mask_sha):
        if sha:
            try:
                return defect_pixels(mask_levels(store.blobs.get(sha), name=f"mask {sha[:12]}"))
            except (FileNotFoundError, ImageDecodeError):
                continue
    return None


def initial_drawing(region: np.ndarray | None, size: tuple[int, int]) -> dict[str, Any]:
    """Fabric.js JSON of ``region`` on a canvas of ``size`` (width, height): a polygon per blob."""
    if region is None or not region.any():
        return {"version": "5.3.0", "objects": []}
    width, height = size
    shown = cv2.resize(region.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(shown, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    objects = []
    for contour in contours:
        points = contour[:, 0, :].astype(float)
        if len(points) < 3:  # a one- or two-pixel blob: a small square around it
            x, y = points.min(axis=0)
            points = np.array([[x, y], [x + 1, y], [x + 1, y + 1], [x, y + 1]])
        left, top = points.min(axis=0)
        objects.append({
            "type": "Polygon", "left": float(left), "top": float(top),
            "points": [{"x": float(x), "y": float(y)} for x, y in points],
            "fill": PAINT_RGBA, "stroke": PAINT_RGBA, "strokeWidth": 1,
            "originX": "left", "originY": "top", "scaleX": 1, "scaleY": 1,
        })  # fmt: skip
    return {"version": "5.3.0", "objects": objects}


def painted_region(
    drawn: np.ndarray | None, start: np.ndarray | None, image_shape: tuple[int, ...]
) -> np.ndarray:
    """The region the canvas shows at the image's size: ``drawn``'s (RGBA) painted pixels, or
    ``start`` when the canvas was never touched."""
    height, width = image_shape[:2]
    if drawn is not None:
        if drawn.ndim != 3 or drawn.shape[2] != 4:
            raise ValueError(f"canvas drawing must be (h, w, 4) RGBA, got shape {drawn.shape}")
        region = drawn[:, :, 3] >= _PAINTED_LEVEL
    elif start is not None:
        region = start
    else:
        return np.zeros((height, width), dtype=bool)
    resized = cv2.resize(region.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    return resized > 0


def encode_region(region: np.ndarray) -> bytes:
    if region.ndim != 2 or region.dtype != bool:
        raise ValueError(f"a region is (H, W) bool, got {region.dtype} of shape {region.shape}")
    ok, buffer = cv2.imencode(".png", region.astype(np.uint8) * 255)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {region.shape} region as PNG")
    return buffer.tobytes()


def store_region(store: Store, region: np.ndarray | None) -> str | None:
    """Put a painted region into the blob store; its sha256 (None: nothing painted)."""
    if region is None or not region.any():
        return None
    return store.blobs.put(encode_region(region), ".png")
