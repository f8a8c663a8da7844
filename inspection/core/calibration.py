"""Calibrate a bundle on its OWN raw validation outputs: normalisation, thresholds, segmentation.

An exported model scores differently from the torch model it came from (FP32's numbers make an
INT8 bundle reject every good part), so each bundle is calibrated on its own outputs: the image
threshold by the operating point, the pixel threshold at the best pixel F1 (without masks:
above the good maps' peaks at the budget), each normalised to 0.5, and the segmentation.
Layered one way: ``regions`` <- ``verdict`` <- ``segmentation`` <- ``calibration`` <- ``metrics``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from inspection.core.operating_point import (
    OUT_OF_FOLD,
    OperatingPoint,
    ThresholdChoice,
    choose_threshold,
    f1_adaptive_threshold,
    good_map_threshold,
)
from inspection.core.segmentation import select_segmentation
from inspection.core.verdict import Segmentation

CALIBRATION_METHOD = "f1-adaptive"
"""The method of calibrations recorded before operating points (``operating`` None)."""
OPERATING_POINT_METHOD = "operating-point"


@dataclass(frozen=True)
class Normalization:
    """Min-max normalisation of raw outputs, as anomalib's post-processor: normalised =
    clip((raw - threshold_raw) / (max - min) + 0.5, 0, 1), apart for image scores and maps."""

    image_threshold_raw: float
    pixel_threshold_raw: float
    image_min: float
    image_max: float
    pixel_min: float
    pixel_max: float

    @property
    def fingerprint(self) -> str:
        """16 hex digits naming this scale: every stored score records the fingerprint it was
        normalised under (``Inspection.score_scale``), so a re-fitted normalisation
        (``runtime.recalibration``) is never mistaken for the bundle's signed one."""
        values = ",".join(repr(float(getattr(self, f.name))) for f in fields(self))
        return hashlib.sha256(values.encode("ascii")).hexdigest()[:16]


@dataclass(frozen=True)
class Calibration:
    """What a bundle's own validation outputs set: normalisation (thresholds at 0.5) and
    segmentation; ``image_f1``/``pixel_f1`` there (None: not recorded, as in training) and how
    the image threshold was chosen (``operating``; None: before operating points)."""

    normalization: Normalization
    segmentation: Segmentation
    split: str = "validation"
    n_good: int | None = None
    n_defective: int | None = None
    image_f1: float | None = None
    pixel_f1: float | None = None
    method: str = CALIBRATION_METHOD
    operating: ThresholdChoice | None = None
    good_scores: tuple[float, ...] = ()
    """The raw good calibration scores ``operating`` was chosen on (signed with the bundle):
    a threshold is derived again from them and audited production goods without retraining
    (``core.certificate``). Empty: recorded before they were kept, or a training record whose
    fused (global-context) threshold replaced the local one (its bundles keep their own)."""
    good_weights: tuple[float, ...] = ()
    """How many good images each of ``good_scores`` counts for (``convolved``); empty: one."""
    good_score_sources: tuple[str, ...] = ()
    """Where each of ``good_scores`` comes from (a ``good_sources`` name); empty: recorded
    before sources were kept, read from the order ``calibrate`` writes (``score_sources``)."""

    def __post_init__(self) -> None:
        norm = self.normalization
        if not (norm.image_min <= norm.image_max and norm.pixel_min <= norm.pixel_max):
            raise ValueError(f"calibration min must not exceed max, got {norm}")
        if min(self.n_good or 0, self.n_defective or 0) < 0:
            raise ValueError("calibration image counts must be >= 0")
        if self.good_weights and len(self.good_weights) != len(self.good_scores):
            raise ValueError(
                f"good_weights: expected {len(self.good_scores)} entries, got "
                f"{len(self.good_weights)}"
            )

    def good_set(self) -> tuple[np.ndarray, np.ndarray]:
        """(G,) raw good calibration scores and (G,) the images each counts for."""
        scores = np.asarray(self.good_scores, dtype=np.float64)
        weights = self.good_weights or np.ones(scores.size)
        return scores, np.asarray(weights, dtype=np.float64)

    def score_sources(self) -> tuple[str, ...]:
        """(G,) the source of each good score: recorded, else from ``calibrate``'s order (the
        out-of-fold scores first, as many images as ``good_sources`` counts, then the rest)."""
        if self.good_score_sources or not self.good_scores:
            return self.good_score_sources
        _, weights = self.good_set()
        counts = dict((self.operating.good_sources or {}) if self.operating else {})
        oof = counts.pop(OUT_OF_FOLD, 0)
        before = np.cumsum(weights) - weights  # images counted before each score
        rest = "+".join(sorted(counts)) or "calibration"
        return tuple(OUT_OF_FOLD if done < oof - 1e-9 else rest for done in before)


def calibrate(
    scores: np.ndarray,
    maps: np.ndarray,
    labels: np.ndarray,
    masks: np.ndarray,
    defect_types: Sequence[str],
    *,
    mask_known: np.ndarray | None = None,
    point: OperatingPoint | None = None,
    extra_good_scores: np.ndarray | None = None,
    good_sources: dict[str, int] | None = None,
    validation_good: bool = True,
    extra_weights: np.ndarray | None = None,
) -> Calibration:
    """Calibration of one bundle from its raw outputs on the validation split: scores (N,),
    maps (N, h, w), labels 0/1, masks at the map resolution (``mask_known`` False: left out of
    pixel figures); ``point`` default: a 1 % budget. ``extra_good_scores`` (G,) join the
    validation good ones (none when not ``validation_good``: they fitted a fusion) in setting
    the image threshold, ``good_sources`` naming their counts, ``extra_weights`` the images
    each counts for (``core.operating_point.convolved``)."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    maps = np.asarray(maps, dtype=np.float32)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    masks = np.asarray(masks).astype(bool)
    n = len(scores)
    if maps.ndim != 3 or len(maps) != n or masks.shape != maps.shape or len(labels) != n:
        raise ValueError(
            f"calibrate needs scores (N,), labels (N,), maps and masks (N, h, w); got "
            f"{scores.shape}, {labels.shape}, {maps.shape}, {masks.shape}"
        )
    if len(defect_types) != n:
        raise ValueError(f"defect_types: expected {n} entries, got {len(defect_types)}")
    known = np.ones(n, bool) if mask_known is None else np.asarray(mask_known, dtype=bool)
    point = point or OperatingPoint()
    extra = np.empty(0) if extra_good_scores is None else np.asarray(extra_good_scores, float)
    own = scores[labels == 0] if validation_good else np.empty(0)
    weights = None if extra_weights is None else np.r_[extra_weights, np.ones(own.size)]
    good = np.r_[extra.reshape(-1), own]
    sources = good_sources or {"validation": int((labels == 0).sum())}
    per_score = _per_score_sources(sources, extra.size, extra_weights, own.size)
    choice = choose_threshold(
        good, point, defect_scores=scores[labels == 1], good_sources=sources, good_weights=weights
    )
    image_threshold = choice.threshold
    if masks[known].any():
        pixel_threshold, pixel_f1 = f1_adaptive_threshold(maps[known], masks[known])
    else:  # no defect pixel: the level at most ``budget`` of good maps reach
        peaks = maps[labels == 0].reshape(int((labels == 0).sum()), -1).max(axis=1)
        pixel_threshold, pixel_f1 = good_map_threshold(peaks, point.budget), 0.0
    values = np.r_[scores, good, image_threshold]
    norm = Normalization(
        image_threshold_raw=image_threshold,
        pixel_threshold_raw=pixel_threshold,
        image_min=float(values.min()),
        image_max=float(values.max()),
        pixel_min=float(min(maps.min(), pixel_threshold)),
        pixel_max=float(max(maps.max(), pixel_threshold)),
    )
    segmentation = calibrated_segmentation(norm, scores, maps, masks, labels, defect_types, known)
    return Calibration(
        normalization=norm,
        segmentation=segmentation,
        n_good=int((labels == 0).sum()),
        n_defective=int((labels == 1).sum()),
        image_f1=_f1_at(scores, labels, image_threshold),
        pixel_f1=round(pixel_f1, 6) if masks[known].any() else None,
        method=OPERATING_POINT_METHOD,
        operating=choice,
        good_scores=tuple(float(f"{v:.9g}") for v in good),
        good_weights=() if weights is None else tuple(float(w) for w in weights),
        good_score_sources=per_score,
    )


def _per_score_sources(
    sources: dict[str, int], n_extra: int, extra_weights: np.ndarray | None, n_own: int
) -> tuple[str, ...]:
    """The source of each of ``calibrate``'s good scores: ``extra`` holds the out-of-fold ones
    first (as many images as ``sources`` counts, ``extra_weights`` each), then calibration
    images; the validation ones follow."""
    weights = np.ones(n_extra) if extra_weights is None else np.asarray(extra_weights, float)
    before = np.cumsum(weights) - weights
    oof = sources.get(OUT_OF_FOLD, 0)
    extra = [OUT_OF_FOLD if done < oof - 1e-9 else "calibration" for done in before]
    return (*extra, *(["validation"] * n_own))


def _f1_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float | None:
    """Image F1 of ``scores >= threshold`` (None without defective images)."""
    if not (labels == 1).any():
        return None
    ng = scores >= threshold
    tp = int((ng & (labels == 1)).sum())
    return round(2 * tp / (int(ng.sum()) + int((labels == 1).sum())), 6)


def normalize_maps(maps: np.ndarray, norm: Normalization) -> np.ndarray:
    """Raw maps (any shape) -> float32 in [0, 1] with ``pixel_threshold_raw`` at 0.5."""
    return normalize(maps, norm.pixel_threshold_raw, norm.pixel_min, norm.pixel_max)


def normalize_scores(scores: np.ndarray, norm: Normalization) -> np.ndarray:
    """Raw image scores -> float32 in [0, 1] with ``image_threshold_raw`` at 0.5."""
    return normalize(scores, norm.image_threshold_raw, norm.image_min, norm.image_max)


def normalize(raw: np.ndarray | float, threshold: float, low: float, high: float) -> np.ndarray:
    """Min-max normalise raw scores or maps (any shape) to float32 in [0, 1] with ``threshold``
    mapped to 0.5 (anomalib's rule); a zero range maps above to 1, below to 0. The station's
    rule (``runtime.preprocess``) and the calibration's alike, in one float32 buffer the size
    of ``raw`` (a test split's maps: no four temporaries of their size)."""
    raw = np.asarray(raw, dtype=np.float32)
    span = float(high) - float(low)
    if span == 0.0:
        return np.where(raw > threshold, 1.0, np.where(raw < threshold, 0.0, 0.5)).astype(
            np.float32
        )
    # ``clip((raw - t) / span + 0.5)`` in float32, in one buffer
    out = np.subtract(raw, np.float32(threshold), out=np.empty(raw.shape, np.float32))
    np.divide(out, np.float32(span), out=out)
    np.add(out, np.float32(0.5), out=out)
    return np.clip(out, 0.0, 1.0, out=out)


def calibrated_segmentation(
    norm: Normalization,
    scores: np.ndarray,
    maps: np.ndarray,
    masks: np.ndarray,
    labels: np.ndarray,
    defect_types: Sequence[str],
    known: np.ndarray,
) -> Segmentation:
    """The segmentation selected on these normalised maps, the faint-peak level on the images
    ``scores`` judges NG (global 0.5 without defective or good images to choose on)."""
    normalised = normalize_maps(maps, norm)
    defective = (labels == 1) & known
    if not defective.any() or not (labels == 0).any():
        return Segmentation.global_threshold(0.5)
    return select_segmentation(
        normalised[defective],
        masks[defective],
        [t for t, keep in zip(defect_types, defective, strict=True) if keep],
        normalised[labels == 0],
        ng=normalize_scores(scores, norm)[defective] >= 0.5,
    )
