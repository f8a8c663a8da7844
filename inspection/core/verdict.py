"""The one rule that turns a score and an anomaly map into a verdict and defect regions, for
every stage that decides OK/NG or draws regions. ``judge``: NG exactly when ``score >=
threshold`` and (with a minimum defect area) a region reaches it; an NG always carries at
least the region around the map's peak; an OK carries none, its regions are ``candidates``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from inspection.core.regions import extract_regions
from inspection.core.threshold import Verdict, verdict_of
from inspection.core.types import DefectRegion

SegmentationKind = Literal["global", "adaptive"]
SEGMENTATION_KINDS: tuple[str, ...] = ("global", "adaptive")


@dataclass(frozen=True)
class Segmentation:
    """How a normalised anomaly map becomes defect regions: hysteresis seeded at its peaks
    (``kind="global"``: one pixel threshold, ``floor == seed_level``). A region must reach
    ``seed_level``, never grows below ``floor`` and keeps the connected pixels at or above
    ``floor + relative_level * (its peak - floor)``; regions under ``min_area_fraction`` of the
    image are dropped (never the forced peak region). A faint NG image (peak below ``floor``)
    gets the area at or above ``median + peak_level * (peak - median)`` around its peak."""

    kind: SegmentationKind = "global"
    seed_level: float = 0.5
    floor: float = 0.5
    relative_level: float = 0.0
    min_area_fraction: float = 0.0
    peak_level: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in SEGMENTATION_KINDS:
            raise ValueError(
                f"segmentation kind must be one of {SEGMENTATION_KINDS}, got {self.kind!r}"
            )
        for name in ("seed_level", "floor"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"segmentation {name} must be in [0, 1], got {value}")
        if self.floor > self.seed_level:
            raise ValueError(
                f"segmentation floor ({self.floor}) must not exceed seed_level ({self.seed_level})"
            )
        if not 0.0 <= self.relative_level < 1.0:
            raise ValueError(f"relative_level must be in [0, 1), got {self.relative_level}")
        if not 0.0 <= self.min_area_fraction < 1.0:
            raise ValueError(f"min_area_fraction must be in [0, 1), got {self.min_area_fraction}")
        if not 0.0 < self.peak_level < 1.0:
            raise ValueError(f"peak_level must be in (0, 1), got {self.peak_level}")
        if self.kind == "global" and (self.floor != self.seed_level or self.relative_level != 0):
            raise ValueError(
                "a global segmentation is one pixel threshold: floor must equal seed_level "
                "and relative_level must be 0"
            )

    @classmethod
    def global_threshold(cls, pixel_threshold: float) -> Segmentation:
        """Plain thresholding: defect pixels are ``map >= pixel_threshold``."""
        level = float(pixel_threshold)
        return cls(kind="global", seed_level=level, floor=level)

    def describe(self) -> str:
        faint = f"; faint peak at {self.peak_level:.2f}" if self.peak_level != 0.5 else ""
        if self.kind == "global":
            return f"global pixel threshold {self.seed_level:.3f}{faint}"
        return (
            f"adaptive: seeds >= {self.seed_level:.3f}, grow to >= {self.floor:.3f} "
            f"+ {self.relative_level:.2f} x (region peak - floor){faint}"
        )


@dataclass(frozen=True)
class Judgement:
    """Verdict and regions of one image; ``mask`` is (H, W) bool, empty for OK."""

    verdict: Verdict
    mask: np.ndarray
    regions: tuple[DefectRegion, ...]
    candidates: tuple[DefectRegion, ...] = ()


def judge(
    score: float,
    threshold: float,
    anomaly_map: np.ndarray,
    segmentation: Segmentation,
    *,
    min_area: float | None = None,
) -> Judgement:
    """Verdict of ``score`` against ``threshold`` and the regions of ``anomaly_map`` ((H, W)
    float32 in [0, 1], normalised), as the module docstring says; ``min_area`` in pixels."""
    if verdict_of(score, threshold) == "OK":
        mask = segment(anomaly_map, segmentation)
        candidates = extract_regions(anomaly_map, mask) if mask.any() else ()
        return Judgement("OK", np.zeros_like(mask), (), candidates)
    mask = ng_mask(anomaly_map, segmentation)
    regions = extract_regions(anomaly_map, mask)
    largest = max(r.area for r in regions)
    if verdict_of(score, threshold, largest, min_area) == "OK":
        return Judgement("OK", np.zeros_like(mask), (), regions)
    return Judgement("NG", mask, regions)


def ng_mask(
    anomaly_map: np.ndarray, segmentation: Segmentation, components: FloorComponents | None = None
) -> np.ndarray:
    """(H, W) bool defect mask of an NG image: the segmented regions plus the peak's region
    (``components``: as ``segment``)."""
    mask = segment(anomaly_map, segmentation, components)
    peak = np.unravel_index(int(np.argmax(anomaly_map)), anomaly_map.shape)
    if not mask[peak]:
        mask |= peak_region(anomaly_map, segmentation, peak)
    return mask


def segment(
    anomaly_map: np.ndarray, segmentation: Segmentation, components: FloorComponents | None = None
) -> np.ndarray:
    """(H, W) bool defect pixels of ``anomaly_map`` by seeded hysteresis (see ``Segmentation``);
    ``components``: the map's ``FloorComponents``, shared by several segmentations of it."""
    if anomaly_map.ndim != 2:
        raise ValueError(f"anomaly_map must be (H, W), got shape {anomaly_map.shape}")
    amap = np.asarray(anomaly_map, dtype=np.float32)
    seg = segmentation
    if seg.relative_level == 0.0 and seg.floor == seg.seed_level:
        mask = amap >= seg.seed_level
    else:
        mask = _hysteresis(
            amap, seg, components if components is not None else FloorComponents(amap)
        )
    if seg.min_area_fraction > 0 and mask.any():
        mask = _drop_small(mask, seg.min_area_fraction * mask.size)
    return mask


class FloorComponents:
    """The 8-connected components of one (H, W) float32 map's pixels at or above a floor,
    labelled once per floor and kept: ``segment`` of several segmentations of the map that share
    a floor (``segmentation.kind_scores``) labels it once."""

    def __init__(self, amap: np.ndarray) -> None:
        self._amap = amap
        self._by_floor: dict[float, _Low] = {}

    def at(self, floor: float) -> _Low:
        """The map's pixels at or above ``floor`` and their components."""
        if floor not in self._by_floor:
            low = self._amap >= floor
            count, labels = cv2.connectedComponents(low.view(np.uint8), connectivity=8)
            inside = np.flatnonzero(low)
            self._by_floor[floor] = _Low(
                count, labels.reshape(-1), inside, self._amap.reshape(-1)[inside],
                labels.reshape(-1)[inside],
            )  # fmt: skip
        return self._by_floor[floor]


@dataclass(frozen=True)
class _Low:
    count: int
    """Components, the background's label 0 included."""
    labels: np.ndarray
    """(H * W,) int32 component of each pixel."""
    inside: np.ndarray
    """Flat indices of the pixels at or above the floor."""
    values: np.ndarray
    """The map at ``inside``."""
    inside_labels: np.ndarray
    """``labels`` at ``inside``."""


def _hysteresis(amap: np.ndarray, seg: Segmentation, components: FloorComponents) -> np.ndarray:
    # A component is seeded iff it holds a pixel >= seed_level (>= floor, so inside ``low``),
    # and then its peak is among those pixels: the per-component max runs over the few seed
    # pixels, not all of ``low``. No seed (most good parts): no component is labelled.
    seeds = np.flatnonzero(amap >= seg.seed_level)
    if not seeds.size:
        return np.zeros(amap.shape, bool)
    low = components.at(seg.floor)
    peaks = np.full(low.count, -np.inf, dtype=np.float32)
    np.maximum.at(peaks, low.labels[seeds], amap.reshape(-1)[seeds])
    seeded = np.isfinite(peaks)
    seeded[0] = False
    peaks = np.where(seeded, peaks, np.float32(seg.floor))
    # an unseeded component (and the background) gets an unreachable level
    levels = np.where(seeded, seg.floor + seg.relative_level * (peaks - seg.floor), np.inf)
    # only pixels of ``low`` can be kept: compare those alone with their component's level
    # (a gather over every pixel costs more than the rest of the segmentation)
    kept = low.values >= levels.astype(np.float32)[low.inside_labels]
    mask = np.zeros(amap.shape, bool)
    mask.reshape(-1)[low.inside] = kept
    return mask


def peak_region(
    anomaly_map: np.ndarray, segmentation: Segmentation, peak: tuple[int, ...]
) -> np.ndarray:
    """(H, W) bool: the connected area around ``peak`` ((y, x)) that produced an NG score, grown
    like any region above ``floor``, else down to ``peak_level`` from the median to the peak."""
    amap = np.asarray(anomaly_map, dtype=np.float32)
    top = float(amap[peak])
    if top > segmentation.floor:
        level = segmentation.floor + segmentation.relative_level * (top - segmentation.floor)
    else:
        median = float(
            np.median(amap[:: max(1, amap.shape[0] // 64), :: max(1, amap.shape[1] // 64)])
        )
        level = median + segmentation.peak_level * (top - median)
    above = (amap >= min(level, top)).astype(np.uint8)
    _, labels = cv2.connectedComponents(above, connectivity=8)
    return labels == labels[peak]


def _drop_small(mask: np.ndarray, min_area: float) -> np.ndarray:
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area
    keep[0] = False
    return keep[labels]
