"""Connected defect regions from a binary mask and its anomaly map."""

from __future__ import annotations

import cv2
import numpy as np

from inspection.core.types import DefectRegion


def extract_regions(
    anomaly_map: np.ndarray, mask: np.ndarray, *, min_area: int = 1
) -> tuple[DefectRegion, ...]:
    """Regions of ``mask`` ((H, W) bool) scored by ``anomaly_map`` ((H, W) float32), largest first."""
    if mask.shape != anomaly_map.shape:
        raise ValueError(f"mask shape {mask.shape} != anomaly_map shape {anomaly_map.shape}")
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8
    )
    regions = []
    for label in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[label])
        if area < min_area:
            continue
        inside = labels[y : y + h, x : x + w] == label
        scores = np.where(inside, anomaly_map[y : y + h, x : x + w], -np.inf)
        peak_y, peak_x = np.unravel_index(int(np.argmax(scores)), scores.shape)
        values = anomaly_map[y : y + h, x : x + w][inside]
        regions.append(
            DefectRegion(
                box=(x, y, x + w, y + h),
                area=area,
                peak=(x + int(peak_x), y + int(peak_y)),
                max_score=float(values.max()),
                mean_score=float(values.mean()),
            )
        )
    return tuple(sorted(regions, key=lambda r: r.area, reverse=True))
