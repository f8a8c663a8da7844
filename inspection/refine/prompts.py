"""Prompts from an anomaly map: per connected region a padded box, peak points and
negative points in confidently normal surroundings."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from inspection.refine.config import PromptConfig


@dataclass(frozen=True)
class RegionPrompt:
    """Prompts for one connected region of the raw mask, in image pixels: the (H, W) bool
    ``region``, its padded (x0, y0, x1, y1) ``box`` (exclusive upper bounds, clipped) and
    (x, y) ``positive`` / ``negative`` points."""

    region: np.ndarray
    box: tuple[int, int, int, int]
    positive: tuple[tuple[int, int], ...]
    negative: tuple[tuple[int, int], ...]

    @property
    def area(self) -> int:
        return int(self.region.sum())

    def points_and_labels(self) -> tuple[np.ndarray, np.ndarray]:
        """(N, 2) float32 (x, y) points and (N,) float32 labels: 1 positive, 0 negative."""
        points = list(self.positive) + list(self.negative)
        labels = [1.0] * len(self.positive) + [0.0] * len(self.negative)
        return (
            np.asarray(points, dtype=np.float32).reshape(-1, 2),
            np.asarray(labels, dtype=np.float32),
        )


def prompts_from_map(
    anomaly_map: np.ndarray, mask: np.ndarray, config: PromptConfig
) -> tuple[RegionPrompt, ...]:
    """One ``RegionPrompt`` per region of the raw (H, W) bool ``mask`` of at least
    ``min_region_area``, largest first as ``extract_regions`` orders them; map in [0, 1]."""
    if anomaly_map.shape != mask.shape or anomaly_map.ndim != 2:
        raise ValueError(
            f"anomaly_map {anomaly_map.shape} and mask {mask.shape} must be the same (H, W) shape"
        )
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8
    )
    order = sorted(range(1, count), key=lambda i: (-int(stats[i, 4]), i))
    prompts = []
    for label in order:
        if int(stats[label, 4]) < config.min_region_area:
            continue
        x, y, w, h = (int(v) for v in stats[label, :4])
        region = labels == label
        box = pad_box((x, y, x + w, y + h), mask.shape, config)
        positive = positive_points(anomaly_map, region, config)
        prompts.append(
            RegionPrompt(region, box, positive, negative_points(anomaly_map, box, config))
        )
    return tuple(prompts)


def pad_box(
    box: tuple[int, int, int, int], shape: tuple[int, ...], config: PromptConfig
) -> tuple[int, int, int, int]:
    """Pad (x0, y0, x1, y1) by max(box_pad_px, box_pad_fraction * longest side), clipped."""
    x0, y0, x1, y1 = box
    pad = max(config.box_pad_px, round(config.box_pad_fraction * max(x1 - x0, y1 - y0)))
    height, width = shape[:2]
    return (max(0, x0 - pad), max(0, y0 - pad), min(width, x1 + pad), min(height, y1 + pad))


def positive_points(
    anomaly_map: np.ndarray, region: np.ndarray, config: PromptConfig
) -> tuple[tuple[int, int], ...]:
    """Up to ``num_positive`` local maxima of the map inside ``region``, highest first, as (x, y),
    each at least ``peak_min_distance`` (Chebyshev) from the points before it; the global
    maximum first, even on a plateau. Taken greedily, so a saturated map (every pixel a maximum)
    costs one sort, not skimage's spacing of each maximum."""
    if config.num_positive <= 0:
        return ()
    scores = np.where(region, anomaly_map, -1.0).astype(np.float32)
    top_y, top_x = np.unravel_index(int(np.argmax(scores)), scores.shape)
    points = [(int(top_x), int(top_y))]
    distance = max(1, config.peak_min_distance)
    window = np.ones((2 * distance + 1, 2 * distance + 1), np.uint8)
    ys, xs = np.nonzero(region & (scores == cv2.dilate(scores, window)))
    for index in np.argsort(-scores[ys, xs], kind="stable"):  # ties in raster order
        if len(points) >= config.num_positive:
            break
        point = (int(xs[index]), int(ys[index]))
        if all(max(abs(point[0] - x), abs(point[1] - y)) >= distance for x, y in points):
            points.append(point)
    return tuple(points)


def negative_points(
    anomaly_map: np.ndarray, box: tuple[int, int, int, int], config: PromptConfig
) -> tuple[tuple[int, int], ...]:
    """Up to ``num_negative`` (x, y) points, lowest score first, among the side midpoints then
    corners of ``box`` grown by ``negative_offset_px``: inside the image, at most
    ``negative_max_score``."""
    if config.num_negative <= 0:
        return ()
    height, width = anomaly_map.shape
    x0, y0, x1, y1 = box
    off = config.negative_offset_px
    left, top, right, bottom = x0 - off, y0 - off, x1 - 1 + off, y1 - 1 + off
    cx, cy = (x0 + x1 - 1) // 2, (y0 + y1 - 1) // 2
    sides = [(cx, top), (right, cy), (cx, bottom), (left, cy)]
    candidates = [*sides, (left, top), (right, top), (right, bottom), (left, bottom)]
    scored = [
        (float(anomaly_map[y, x]), index, (x, y))
        for index, (x, y) in enumerate(candidates)
        if 0 <= x < width and 0 <= y < height and anomaly_map[y, x] <= config.negative_max_score
    ]
    scored.sort()
    return tuple(point for _, _, point in scored[: config.num_negative])
