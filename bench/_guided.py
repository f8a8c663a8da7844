"""Guided upsampling of anomaly maps, measured by ``bench/masks.py`` (torch-free, cv2 only).

Kept in bench, not in the station: on held-out data it did not pay (``reports/masks``).

PatchCore scores stride-8 patches; the upsampled map is a blob around each defect. The guided
filter (He, Sun & Tang, "Guided Image Filtering", TPAMI 2013) rewrites the map locally as a
linear function of the image, ``q = a * I + b`` over each ``(2 r + 1)^2`` window, so inside a
blob the map follows the image's own edges: a dark crack in a high blob stays high, the lighter
surface around it falls. ``eps`` (in guide units squared) is how much image contrast counts as
an edge; flat windows keep the map's local mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class MapGuidance:
    """Guided-filter settings: ``radius`` in map pixels (>= 1), ``eps`` > 0 on a [0, 1] guide."""

    radius: int = 4
    eps: float = 1e-3

    def __post_init__(self) -> None:
        if self.radius < 1:
            raise ValueError(f"map guidance radius must be >= 1 pixel, got {self.radius}")
        if not self.eps > 0:
            raise ValueError(f"map guidance eps must be > 0, got {self.eps}")


def guide_of(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 grey guide in [0, 1] at ``size`` (h, w) from an (h', w', 3) uint8 image."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"guide image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if grey.shape != size:
        grey = cv2.resize(grey, size[::-1], interpolation=cv2.INTER_AREA)
    return grey.astype(np.float32) / np.float32(255.0)


def guided_map(anomaly_map: np.ndarray, guide: np.ndarray, guidance: MapGuidance) -> np.ndarray:
    """(H, W) float32: ``anomaly_map`` (H, W) filtered with ``guide`` (H, W) float32 in [0, 1].

    Any monotone map space works (raw or normalised); the output stays in the input's range
    up to the filter's small overshoot at strong edges.
    """
    if anomaly_map.shape != guide.shape:
        raise ValueError(f"guide shape {guide.shape} != anomaly map shape {anomaly_map.shape}")
    p = np.asarray(anomaly_map, dtype=np.float32)
    i = np.asarray(guide, dtype=np.float32)
    side = 2 * guidance.radius + 1

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, (side, side), borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = box(i), box(p)
    a = (box(i * p) - mean_i * mean_p) / (box(i * i) - mean_i * mean_i + np.float32(guidance.eps))
    b = mean_p - a * mean_i
    return box(a) * i + box(b)
