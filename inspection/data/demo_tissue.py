"""The ``tissue`` evaluation product: a stained-tissue photo (scikit-image) with defect kinds
nothing is tuned on, to check the segmentation choices generalise. Masks are the visibly
altered pixels (``smudge``, ``warp``: more than 1 grey level)."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from inspection.data.demo_shapes import draw_polyline, irregular_blob, smooth_curve

TISSUE_DEFECT_KINDS: tuple[str, ...] = ("colour_shift", "cut", "smudge", "warp")


def _soft_blob(rng: np.random.Generator, size: int, radius: float) -> np.ndarray:
    """A soft-edged irregular blob, (size, size) float32 in [0, 1]."""
    blob = irregular_blob(rng, size, radius)
    return cv2.GaussianBlur(blob, (0, 0), max(1.0, radius * 0.25))


def _cut(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    size = image.shape[0]
    points = smooth_curve(rng, size, rng.uniform(0.3, 0.6) * size)
    width = rng.uniform(1.0, 2.2) * size / 256
    line = draw_polyline(image.shape[:2], points, np.full(len(points) - 1, width))
    alpha = np.clip(line * rng.uniform(0.85, 1.0), 0, 1)
    background = np.asarray((232.0, 226.0, 220.0), np.float32)  # bare glass under the section
    target = np.broadcast_to(background, image.shape) * rng.uniform(0.95, 1.02)
    return alpha.astype(np.float32), target.astype(np.float32)


def _colour_shift(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    size = image.shape[0]
    alpha = _soft_blob(rng, size, rng.uniform(0.07, 0.12) * size) * rng.uniform(0.7, 0.9)
    swapped = image[:, :, ::-1] * np.float32(rng.uniform(0.9, 1.05))  # R<->B: brown <-> blue
    return alpha.astype(np.float32), swapped.astype(np.float32)


def _smudge(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    size = image.shape[0]
    alpha = _soft_blob(rng, size, rng.uniform(0.07, 0.12) * size)
    blurred = cv2.GaussianBlur(image, (0, 0), rng.uniform(2.5, 4.0) * size / 256)
    return _visible(alpha, image, blurred), blurred.astype(np.float32)


def _warp(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    size = image.shape[0]
    radius = rng.uniform(0.08, 0.13) * size
    weight = _soft_blob(rng, size, radius)
    angle = rng.uniform(0, 2 * np.pi)
    shift = rng.uniform(4.0, 7.0) * size / 256
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    map_x = xx + np.float32(shift * np.cos(angle)) * weight
    map_y = yy + np.float32(shift * np.sin(angle)) * weight
    warped = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    alpha = np.where(weight > 0.05, 1.0, 0.0).astype(np.float32)
    return _visible(alpha, image, warped), warped.astype(np.float32)


def _visible(alpha: np.ndarray, image: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``alpha`` where the blend visibly changes the pixel (> 1 grey level), else 0."""
    change = np.abs(target - image).max(axis=2) * alpha
    return np.where(change > 1.0, alpha, 0.0).astype(np.float32)


TISSUE_DEFECTS: dict[
    str, Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]
] = {
    "colour_shift": _colour_shift,
    "cut": _cut,
    "smudge": _smudge,
    "warp": _warp,
}
