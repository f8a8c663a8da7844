"""Torch-free inspection metrics: what the station's verdicts and regions are worth.

Threshold-free: image AUROC, pixel AUROC and AUPRO (MVTec AD's, to 30 % false positives),
the last two from one sort of the pixels (``pixel_figures``). At the verdict rule
(``core.verdict``): image F1, false-reject and miss rates, pixel F1/IoU, region recall, false
regions per good image, and the masks where detection is right (``mask_figures``: a missed
part does not cap the mask figure). Overall and per defect type (with all good images).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import cv2
import numpy as np

from inspection.core.bootstrap import rate_interval
from inspection.core.calibration import Calibration
from inspection.core.config import from_mapping, to_mapping
from inspection.core.errors import ConfigError
from inspection.core.regions import region_hits
from inspection.core.verdict import Segmentation, judge

AUPRO_FPR_LIMIT = 0.3
METRICS_SCHEMA = 1


def image_auroc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """AUROC of (N,) scores against (N,) 0/1 labels; None with a single class."""
    # scikit-learn is a station/train extra, not a dependency of the base (core) install.
    # deferred: sklearn
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels).astype(bool).reshape(-1)
    if labels.all() or not labels.any():
        return None
    return float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64).reshape(-1)))


def pixel_auroc(maps: np.ndarray, masks: np.ndarray) -> float | None:
    """AUROC over all pixels of (N, H, W) maps against (N, H, W) bool masks."""
    return pixel_figures(maps, masks)[0]


def aupro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = AUPRO_FPR_LIMIT) -> float | None:
    """Normalised area under the per-region-overlap curve up to ``fpr_limit``.

    maps (N, H, W) float, masks (N, H, W) bool. Every ground-truth component (8-connected)
    weighs the same; the false-positive rate runs over all non-defect pixels. Exact over all
    distinct map values (sorted once), like the MVTec AD reference code. None without any
    defect pixel or without any normal pixel.
    """
    return pixel_figures(maps, masks, fpr_limit)[1]


def pixel_figures(
    maps: np.ndarray,
    masks: np.ndarray,
    fpr_limit: float = AUPRO_FPR_LIMIT,
    negatives: np.ndarray | None = None,
) -> tuple[float | None, float | None]:
    """(pixel AUROC, AUPRO) of (N, H, W) maps against bool masks, from one sort of the pixels.

    Both curves are read at each distinct map value, so the order of equal values does not
    matter (the AUROC is scikit-learn's). Only defect pixels are argsorted (they carry region
    weights). ``negatives``: ascending values of more non-defect pixels, counted as if their
    images were in ``maps`` (``sorted_pixels``, sorted once for many subsets). (None, None)
    with a single class.
    """
    maps = np.asarray(maps, dtype=np.float32)
    masks = np.asarray(masks).astype(bool)
    extra = np.empty(0, np.float32) if negatives is None else np.asarray(negatives, np.float32)
    if maps.shape != masks.shape:
        raise ValueError(f"maps {maps.shape} and masks {masks.shape} differ in shape")
    defects = DefectPixels.of(maps, masks)
    return defects.figures(np.ones(len(maps), bool), (extra, np.sort(maps[~masks])), fpr_limit)


@dataclass(frozen=True)
class DefectPixels:
    """The defect pixels of N maps by descending value, their ``images``, 1 / their region's
    area and (N,) ``regions`` per image: argsorted once, a subset is a selection (``figures``)."""

    values: np.ndarray
    images: np.ndarray
    inverse_areas: np.ndarray
    regions: np.ndarray

    @classmethod
    def of(cls, maps: np.ndarray, masks: np.ndarray) -> DefectPixels:
        """Of (N, H, W) float32 maps (finite, else ``ValueError``) and bool masks."""
        if not np.isfinite(maps).all():
            raise ValueError("anomaly maps contain NaN or infinite values")
        inverse_areas, regions = _inverse_areas(masks)
        defect = masks.reshape(-1)
        values = maps.reshape(-1)[defect]
        order = np.argsort(-values)
        images = np.repeat(np.arange(len(masks)), masks.reshape(len(masks), -1).sum(1))
        return cls(values[order], images[order], inverse_areas[defect][order], regions)

    def figures(
        self,
        keep: np.ndarray,
        negatives: Sequence[np.ndarray],
        fpr_limit: float = AUPRO_FPR_LIMIT,
    ) -> tuple[float | None, float | None]:
        """``pixel_figures`` of the images ``keep`` (N,) bool selects: their defect pixels
        against ``negatives``, ascending arrays that must hold the kept images' own non-defect
        pixels and may hold more (the curves count pixels, whichever array holds them). (None,
        None) without a defect pixel kept or a negative; ``ValueError`` on NaN or infinity."""
        if any(len(part) and not np.isfinite(part[[0, -1]]).all() for part in negatives):
            raise ValueError("anomaly maps contain NaN or infinite values")
        kept = keep[self.images]
        values = self.values[kept]
        if not len(values) or not sum(len(part) for part in negatives):
            return None, None
        weights = self.inverse_areas[kept] / int(self.regions[keep].sum())
        return _curve_figures(values, weights, negatives, fpr_limit)


def _curve_figures(
    values: np.ndarray,
    weights: np.ndarray,
    negatives: Sequence[np.ndarray],
    fpr_limit: float,
) -> tuple[float, float]:
    """(pixel AUROC, AUPRO) of the defect pixels' descending ``values`` with region ``weights``
    (summing to 1) against the ascending ``negatives``: each distinct value adds two points,
    all above it, then all at or above it (between two, the curves run flat)."""
    last_of_value = np.r_[values[1:] != values[:-1], True]
    rising = values[last_of_value][::-1]  # ascending keys: numpy's fast searchsorted
    above = sum(len(a) - np.searchsorted(a, rising, side="right") for a in negatives)[::-1]
    at_or_above = sum(len(a) - np.searchsorted(a, rising, side="left") for a in negatives)[::-1]
    total = sum(len(a) for a in negatives)
    found = np.flatnonzero(last_of_value) + 1  # defect pixels at or above each value
    before = np.r_[0, found[:-1]]
    # trapezoids: at each value (negatives and positives move), then flat to the next value
    rising_area = (at_or_above - above) * (before + found) / 2
    flat_area = (np.r_[above[1:], total] - at_or_above) * found
    auroc = float((rising_area.sum() + flat_area.sum()) / (total * found[-1]))
    # the (fpr, overlap) points as far as the first beyond the limit: 0, then two per value
    end = min(int(np.searchsorted(at_or_above / total, fpr_limit, side="right")) + 1, len(found))
    overlap = np.cumsum(weights)[last_of_value][:end]
    fpr, pro = np.zeros(2 * end + 2, np.int64), np.zeros(2 * end + 2)
    fpr[1:-1:2], fpr[2:-1:2] = above[:end], at_or_above[:end]
    pro[3:-1:2], pro[2:-1:2] = overlap[:-1], overlap
    fpr[-1], pro[-1] = (total if end == len(found) else above[end]), overlap[-1]
    return auroc, _area_to_limit(fpr / total, pro, fpr_limit)


def sorted_pixels(maps: np.ndarray) -> np.ndarray:
    """All map values of (N, H, W) ``maps``, ascending (``pixel_figures``' ``negatives``)."""
    return np.sort(np.asarray(maps, dtype=np.float32).reshape(-1))


def _inverse_areas(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel of (N, H, W) bool masks, 1 / (area of its 8-connected region) (0 outside), and
    (N,) the regions of each image."""
    weights = np.zeros(masks.shape, dtype=np.float64)
    regions = np.zeros(len(masks), dtype=np.int64)
    for i in range(len(masks)):
        if not masks[i].any():
            continue
        count, labels, stats, _ = cv2.connectedComponentsWithStats(
            masks[i].astype(np.uint8), connectivity=8
        )
        area = stats[:, cv2.CC_STAT_AREA].astype(np.float64)
        inside = labels > 0
        weights[i][inside] = 1.0 / area[labels[inside]]
        regions[i] = count - 1
    return weights.reshape(-1), regions


def _area_to_limit(fpr: np.ndarray, pro: np.ndarray, fpr_limit: float) -> float:
    """Area under (fpr, pro) from 0 to ``fpr_limit`` (interpolated there), over the limit."""
    end = int(np.searchsorted(fpr, fpr_limit, side="right"))
    if end < len(fpr):
        span = fpr[end] - fpr[end - 1]
        share = (fpr_limit - fpr[end - 1]) / span if span > 0 else 0.0
        fpr = np.r_[fpr[:end], fpr_limit]
        pro = np.r_[pro[:end], pro[end - 1] + share * (pro[end] - pro[end - 1])]
    return float(np.trapezoid(pro, fpr) / fpr_limit)


@dataclass(frozen=True)
class JudgedSet:
    """The verdict rule applied to N images: ng (N,) bool, masks (N, H, W) bool, regions (N,)."""

    ng: np.ndarray
    masks: np.ndarray
    n_regions: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.ng)
        if self.masks.ndim != 3 or len(self.masks) != n or self.n_regions.shape != (n,):
            raise ValueError(
                f"JudgedSet needs ng (N,), masks (N, H, W), n_regions (N,); got "
                f"{self.ng.shape}, {self.masks.shape}, {self.n_regions.shape}"
            )


def judge_all(
    scores: np.ndarray, maps: np.ndarray, threshold: float, segmentation: Segmentation
) -> JudgedSet:
    """``judge`` every image: scores (N,) and maps (N, H, W) normalised to [0, 1]."""
    judged = [
        judge(float(s), threshold, m, segmentation) for s, m in zip(scores, maps, strict=True)
    ]
    return JudgedSet(
        ng=np.array([j.verdict == "NG" for j in judged], dtype=bool),
        masks=np.stack([j.mask for j in judged]),
        n_regions=np.array([len(j.regions) for j in judged], dtype=np.int64),
    )


@dataclass(frozen=True)
class MaskCounts:
    """Per image of N judged images, (N,) int64 each: ``ng`` (1: judged NG), ``tp``,
    ``predicted`` and ``true`` pixels of the judged and ground-truth masks, ground-truth
    components ``found`` (``region_hits``) of ``total``, and judged ``regions``."""

    ng: np.ndarray
    tp: np.ndarray
    predicted: np.ndarray
    true: np.ndarray
    found: np.ndarray
    total: np.ndarray
    regions: np.ndarray

    def __getitem__(self, rows: np.ndarray) -> MaskCounts:
        return MaskCounts(*(getattr(self, f.name)[rows] for f in fields(self)))


def mask_counts(judged: JudgedSet, truth: np.ndarray) -> MaskCounts:
    """``MaskCounts`` of ``judged`` against (N, H, W) bool ground-truth masks."""
    predicted = judged.masks
    hits = np.array([region_hits(p, t) for p, t in zip(predicted, truth, strict=True)], np.int64)
    hits = hits.reshape(len(predicted), 2)
    return MaskCounts(
        ng=judged.ng.astype(np.int64),
        tp=(predicted & truth).reshape(len(truth), -1).sum(1),
        predicted=predicted.reshape(len(predicted), -1).sum(1),
        true=truth.reshape(len(truth), -1).sum(1),
        found=hits[:, 0],
        total=hits[:, 1],
        regions=judged.n_regions.astype(np.int64),
    )


def mask_figures(counts: MaskCounts, labels: np.ndarray) -> dict[str, float | None]:
    """The judged masks of N images (``labels`` 0/1): over all, pooled ``pixel_f1``/``pixel_iou``,
    ``region_recall``, ``false_regions_per_good_image``; over the defective ones judged NG,
    pooled ``ng_pixel_f1``, mean ``ng_region_iou``, median ``ng_area_error`` (None: undefined)."""
    c, labels = counts, np.asarray(labels)
    tp, union = int(c.tp.sum()), int(c.predicted.sum() + c.true.sum())
    right = (labels == 1) & (c.ng == 1) & (c.true > 0)
    good = labels == 0
    total = int(c.total.sum())
    figures: dict[str, float | None] = {
        "pixel_f1": round(2 * tp / union, 6) if c.true.any() else None,
        "pixel_iou": round(tp / (union - tp), 6) if c.true.any() else None,
        "region_recall": round(int(c.found.sum()) / total, 6) if total else None,
        "false_regions_per_good_image": float(c.regions[good].mean()) if good.any() else None,
        "ng_pixel_f1": None,
        "ng_region_iou": None,
        "ng_area_error": None,
    }
    if right.any():
        tp, predicted, true = c.tp[right], c.predicted[right], c.true[right]
        figures["ng_pixel_f1"] = round(2 * int(tp.sum()) / int(predicted.sum() + true.sum()), 6)
        figures["ng_region_iou"] = round(float(np.mean(tp / (predicted + true - tp))), 6)
        figures["ng_area_error"] = round(float(np.median(np.abs(predicted - true) / true)), 6)
    return figures


@dataclass(frozen=True)
class SubsetMetrics:
    """Metrics of one subset: all images, or one defect type's plus the good ones; a figure is
    None when undefined (one class, no masks) or not recorded (before ``METRICS_SCHEMA`` 1)."""

    n_good: int | None = None
    n_defective: int | None = None
    image_auroc: float | None = None
    image_f1: float | None = None
    false_reject_rate: float | None = None
    miss_rate: float | None = None
    pixel_auroc: float | None = None
    aupro: float | None = None
    pixel_f1: float | None = None
    pixel_iou: float | None = None
    gt_regions: int | None = None
    regions_found: int | None = None
    region_recall: float | None = None
    false_regions_per_good_image: float | None = None
    ng_without_region: int | None = None
    miss_low: float | None = None
    miss_high: float | None = None
    """Exact (Clopper-Pearson) 95 % interval of ``miss_rate`` (``core.bootstrap.rate_interval``)."""
    ng_pixel_f1: float | None = None
    ng_region_iou: float | None = None
    ng_area_error: float | None = None
    """The masks of the defective images judged NG (``mask_figures``)."""

    def figures(self) -> dict[str, float]:
        """The recorded figures by name (the undefined ones left out)."""
        return {k: float(v) for k, v in to_mapping(self).items() if v is not None}


@dataclass(frozen=True)
class EvaluationMetrics:
    """Overall and per-defect-type metrics at an image threshold and a segmentation;
    ``calibration`` when the producer records it; ``schema`` 0: read from an older file."""

    overall: SubsetMetrics
    per_defect: dict[str, SubsetMetrics] = field(default_factory=dict)
    image_threshold: float | None = None
    segmentation: str | None = None
    calibration: Calibration | None = None
    schema: int = METRICS_SCHEMA

    @property
    def image_auroc(self) -> float | None:
        """The overall image AUROC (None: undefined or not recorded)."""
        return self.overall.image_auroc

    def to_mapping(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "schema": self.schema,
            "thresholds": {"image": self.image_threshold, "segmentation": self.segmentation},
            "overall": to_mapping(self.overall),
            "per_defect": {k: to_mapping(v) for k, v in sorted(self.per_defect.items())},
        }
        if self.calibration is not None:
            data["calibration"] = to_mapping(self.calibration)
        return data

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> EvaluationMetrics:
        """Read the metrics a record, a bundle or a report stores (any schema so far); other
        keys are left to their readers, an unknown schema or bad figure is a ``ConfigError``."""
        if "schema" not in data:
            return _legacy_metrics(data)
        if data["schema"] != METRICS_SCHEMA:
            raise ConfigError(f"metrics schema {METRICS_SCHEMA} expected, got {data['schema']!r}")
        own = {"overall", "per_defect", "calibration"}
        typed = from_mapping(_Stored, {k: v for k, v in data.items() if k in own}, "metrics")
        thresholds = from_mapping(_Thresholds, data.get("thresholds"), "metrics.thresholds")
        return cls(
            overall=typed.overall,
            per_defect=typed.per_defect,
            image_threshold=thresholds.image,
            segmentation=thresholds.segmentation,
            calibration=typed.calibration,
        )


@dataclass(frozen=True)
class _Stored:
    overall: SubsetMetrics
    per_defect: dict[str, SubsetMetrics] = field(default_factory=dict)
    calibration: Calibration | None = None


@dataclass(frozen=True)
class _Thresholds:
    image: float | None = None
    segmentation: str | None = None


def _legacy_metrics(data: Mapping[str, Any]) -> EvaluationMetrics:
    """Metrics written before schema 1: figures flat or under ``overall`` beside other keys."""
    names = {f.name for f in fields(SubsetMetrics)}

    def subset(section: Any, where: str) -> SubsetMetrics:
        known = (
            {k: v for k, v in section.items() if k in names} if isinstance(section, Mapping) else {}
        )
        return from_mapping(SubsetMetrics, known, where)

    per_defect = data.get("per_defect")
    return EvaluationMetrics(
        overall=subset(data.get("overall", data), "metrics.overall"),
        per_defect={
            str(k): subset(v, f"metrics.per_defect.{k}")
            for k, v in (per_defect.items() if isinstance(per_defect, Mapping) else ())
        },
        schema=0,
    )


def compute_metrics(
    scores: np.ndarray,
    labels: np.ndarray,
    maps: np.ndarray | None,
    gt_masks: np.ndarray | None,
    defect_types: Sequence[str],
    judged: JudgedSet,
    *,
    image_threshold: float,
    segmentation: str,
    mask_known: np.ndarray | None = None,
) -> EvaluationMetrics:
    """Metrics of N ``judged`` images: scores (N,) in ``image_threshold``'s space, labels 0/1,
    maps and gt_masks (N, H, W) or both None; ``mask_known`` False: left out of pixel figures."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    types = np.asarray(list(defect_types), dtype=object)
    n = len(scores)
    if len(labels) != n or len(types) != n or len(judged.ng) != n:
        raise ValueError(
            f"scores, labels, defect_types and judged need the same length, got "
            f"{n}, {len(labels)}, {len(types)}, {len(judged.ng)}"
        )
    if (maps is None) != (gt_masks is None):
        raise ValueError("give both maps and gt_masks, or neither")
    if maps is not None and (np.shape(maps) != np.shape(gt_masks) or np.shape(maps)[0] != n):
        raise ValueError(
            f"maps and gt_masks must both be (N, H, W) with N={n}, "
            f"got {np.shape(maps)} and {np.shape(gt_masks)}"
        )
    known = np.ones(n, bool) if mask_known is None else np.asarray(mask_known, dtype=bool)
    pixels = None if maps is None else (np.asarray(maps), np.asarray(gt_masks).astype(bool))
    good = labels == 0
    # every subset holds all good images: their pixels are sorted once, not once per subset;
    # the other images' defect pixels are argsorted once, each subset selects its own
    clean = good & known
    if pixels is not None:
        clean &= ~pixels[1].reshape(n, -1).any(1)
    negatives = None if pixels is None else sorted_pixels(pixels[0][clean])
    counts = None if pixels is None else mask_counts(judged, pixels[1])
    rest = _rest(pixels, known & ~clean, np.where(labels == 0, "", types))
    data = _Data(scores, labels, pixels, judged, known, clean, negatives, rest, counts)
    per_defect = {
        str(t): _subset(data, good | (types == t)) for t in sorted(set(types[labels == 1]))
    }
    return EvaluationMetrics(
        overall=_subset(data, np.ones(n, bool)),
        per_defect=per_defect,
        image_threshold=float(image_threshold),
        segmentation=segmentation,
    )


@dataclass(frozen=True)
class _Data:
    scores: np.ndarray
    labels: np.ndarray
    pixels: tuple[np.ndarray, np.ndarray] | None
    judged: JudgedSet
    known: np.ndarray
    clean: np.ndarray
    """(N,) bool: the good images with known (empty) masks, in every subset."""
    negatives: np.ndarray | None
    """Their pixels' map values, ascending (``sorted_pixels``)."""
    rest: _Rest | None
    """The other images with known masks, any subset's pixel figures draw on."""
    counts: MaskCounts | None
    """Of every image (``mask_counts``; None without maps)."""


@dataclass(frozen=True)
class _Rest:
    images: np.ndarray
    """(N,) bool: which of the N images."""
    maps: np.ndarray
    masks: np.ndarray
    defects: DefectPixels
    groups: np.ndarray
    """(R,) each of these images' group: its defect type ("" for a good image)."""
    negatives: dict[object, np.ndarray]
    """Each group's non-defect pixels, ascending: sorted once for the subsets it is whole in."""

    def negatives_of(self, keep: np.ndarray) -> list[np.ndarray]:
        """The non-defect pixels of the images (R,) ``keep`` selects, as ascending parts."""
        parts = []
        for group, part in self.negatives.items():
            members = self.groups == group
            if keep[members].all():  # a group has a member: ``_rest`` made it from one
                parts.append(part)
            elif keep[members].any():
                some = members & keep
                parts.append(np.sort(self.maps[some][~self.masks[some]]))
        return parts


def _rest(
    pixels: tuple[np.ndarray, np.ndarray] | None, images: np.ndarray, groups: np.ndarray
) -> _Rest | None:
    """The ``images`` (N,) bool with known masks that are not clean good ones, in ``groups``
    (N,) whose members every subset takes or leaves together (``compute_metrics``)."""
    if pixels is None or not pixels[1][images].any():
        return None
    maps, masks, groups = pixels[0][images].astype(np.float32), pixels[1][images], groups[images]
    negatives = {}
    for group in dict.fromkeys(groups):
        members = groups == group
        negatives[group] = np.sort(maps[members][~masks[members]])
    return _Rest(images, maps, masks, DefectPixels.of(maps, masks), groups, negatives)


def _rate(hits: np.ndarray) -> float | None:
    return float(hits.mean()) if len(hits) else None


def _subset(data: _Data, select: np.ndarray) -> SubsetMetrics:
    labels, ng = data.labels[select], data.judged.ng[select]
    good, bad = labels == 0, labels == 1
    tp = int((ng & bad).sum())
    image_f1 = 2 * tp / max(int(ng.sum()) + int(bad.sum()), 1)
    n_regions = data.judged.n_regions[select]
    pixel = _pixel_figures(data, select & data.known)
    interval = rate_interval(~ng[bad]) if bad.any() else None
    return SubsetMetrics(
        n_good=int(good.sum()),
        n_defective=int(bad.sum()),
        image_auroc=image_auroc(data.scores[select], labels),
        image_f1=round(image_f1, 6),
        false_reject_rate=_rate(ng[good]),
        miss_rate=_rate(~ng[bad]),
        false_regions_per_good_image=_rate(n_regions[good].astype(np.float64)),
        ng_without_region=int((ng & (n_regions == 0)).sum()),
        miss_low=None if interval is None else round(interval.low, 4),
        miss_high=None if interval is None else round(interval.high, 4),
        **pixel,
    )


def _pixel_figures(data: _Data, select: np.ndarray) -> dict[str, Any]:
    empty = dict(
        pixel_auroc=None, aupro=None, pixel_f1=None, pixel_iou=None,
        gt_regions=0, regions_found=0, region_recall=None,
    )  # fmt: skip
    if data.counts is None or not data.counts.true[select].any():
        return empty
    counts = data.counts[select]
    figures = mask_figures(counts, data.labels[select])
    del figures["false_regions_per_good_image"]  # over every good image, masks known or not
    rest = data.rest  # has a defect pixel: ``truth`` has one; the clean are ``data.negatives``
    assert rest is not None and data.negatives is not None
    keep = (select & ~data.clean)[rest.images]
    negatives = [data.negatives, *rest.negatives_of(keep)]
    auroc, pro = rest.defects.figures(keep, negatives)
    total = int(counts.total.sum())
    return figures | dict(
        pixel_auroc=auroc, aupro=pro, gt_regions=total, regions_found=int(counts.found.sum())
    )
