"""Synthetic defect cases for refiner tests: a dark disc on noisy texture, a blurred map."""

from __future__ import annotations

import cv2
import numpy as np

from inspection.core.types import InspectionResult
from inspection.core.verdict import Segmentation, judge


def blurred_blob_case(
    threshold: float, *, sigma: float = 6.0, seed: int = 0, size: int = 128
) -> tuple[np.ndarray, np.ndarray, InspectionResult]:
    """(image (S, S, 3) uint8, ground truth (S, S) bool, NG result with a blurred map)."""
    rng = np.random.default_rng(seed)
    image = np.clip(rng.normal(150, 12, (size, size, 3)), 0, 255).astype(np.uint8)
    gt = np.zeros((size, size), np.uint8)
    cv2.circle(gt, (size // 2 - 4, size // 2 + 6), size // 10, 1, -1)
    gt = gt.astype(bool)
    image[gt] = np.clip(rng.normal(70, 10, (int(gt.sum()), 3)), 0, 255).astype(np.uint8)
    amap = cv2.GaussianBlur(gt.astype(np.float32), (0, 0), sigma)
    amap = (amap / amap.max()).astype(np.float32)
    return image, gt, make_result(amap, threshold)


def make_result(amap: np.ndarray, threshold: float, verdict: str = "NG") -> InspectionResult:
    score = 0.9 if verdict == "NG" else 0.1
    judged = judge(score, threshold, amap, Segmentation.global_threshold(threshold))
    return InspectionResult(
        score=score,
        threshold=threshold,
        verdict=judged.verdict,
        anomaly_map=amap,
        mask=judged.mask,
        regions=judged.regions,
        candidates=judged.candidates,
        latency_ms=1.0,
        model_version="test/v0001-fp32",
    )


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))
