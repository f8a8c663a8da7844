"""Shapes the demo defect generators draw: curves, anti-aliased polylines, irregular blobs."""

from __future__ import annotations

from itertools import pairwise

import cv2
import numpy as np


def smooth_curve(rng: np.random.Generator, size: int, length: float) -> np.ndarray:
    """Points (N, 2) float32 of a random quadratic Bezier curve of about ``length`` px."""
    margin = 0.12 * size
    start = rng.uniform(margin, size - margin, 2)
    angle = rng.uniform(0, 2 * np.pi)
    end = start + length * np.array([np.cos(angle), np.sin(angle)])
    end = np.clip(end, margin * 0.5, size - margin * 0.5)
    normal = np.array([-np.sin(angle), np.cos(angle)])
    control = (start + end) / 2 + normal * rng.uniform(-0.35, 0.35) * length
    t = np.linspace(0, 1, max(8, int(length)))[:, None]
    return ((1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end).astype(np.float32)


def draw_polyline(shape: tuple[int, int], points: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Anti-aliased polyline with per-segment width, drawn at 4x and downsampled: (H, W) float32."""
    scale = 4
    canvas = np.zeros((shape[0] * scale, shape[1] * scale), np.uint8)
    pts = np.rint(points * scale).astype(np.int32)
    for (p, q), w in zip(pairwise(pts), widths, strict=False):
        thickness = max(1, round(w * scale))
        cv2.line(
            canvas, tuple(int(v) for v in p), tuple(int(v) for v in q), 255, thickness, cv2.LINE_AA
        )
    small = cv2.resize(
        canvas.astype(np.float32) / 255.0, (shape[1], shape[0]), interpolation=cv2.INTER_AREA
    )
    return small


def irregular_blob(rng: np.random.Generator, size: int, radius: float) -> np.ndarray:
    """A filled irregular blob, (size, size) float32 in {0, 1}, from a random radial profile."""
    center = rng.uniform(0.2, 0.8, 2) * size
    theta = np.linspace(0, 2 * np.pi, 120, endpoint=False)
    r = np.ones_like(theta)
    for k in range(2, 7):
        r += rng.normal(0, 0.22 / k) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    r = radius * np.clip(r, 0.5, 1.6)
    pts = np.stack([center[0] + r * np.cos(theta), center[1] + r * np.sin(theta)], 1)
    canvas = np.zeros((size * 4, size * 4), np.uint8)
    cv2.fillPoly(canvas, [np.rint(pts * 4).astype(np.int32)], 255, cv2.LINE_AA)
    return cv2.resize(canvas.astype(np.float32) / 255.0, (size, size), interpolation=cv2.INTER_AREA)
