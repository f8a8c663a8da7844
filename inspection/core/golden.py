"""Golden outputs: a bundle's own raw outputs on a few images, to check on the station's CPU,
whose OpenVINO kernels and executed precision may differ from the exporting one's. Export
records a few validation images' raw score, margin and map summary (``golden_outputs``); the
station runs them again at load (``compare_golden``). Drift is in normalised units, and a score
may drift at most its own margin to the export threshold: a drift that could flip it is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from inspection.core.calibration import Normalization
from inspection.core.config import to_mapping
from inspection.core.errors import BundleError
from inspection.core.operating_point import (
    BUDGET_CONFIDENCE,
    MAX_BUDGET,
    OperatingPoint,
    choose_threshold,
    conformal_bound,
)
from inspection.core.threshold import check_threshold, is_ng

GOLDEN_DIR = "golden"
GOLDEN_IMAGES = 4
"""Images per bundle: the first good and defective validation images, alternating, at least
``MIN_MARGIN`` from the threshold."""
NEAR_THRESHOLD = 4
"""Further golden images: those whose served score is nearest the threshold."""
MIN_MARGIN = 0.002
"""Every golden image sits at least this far from the threshold (normalised units): one closer
(a threshold set at a validation image's own score sits at 0) would refuse a bundle on any
last-bit difference of a kernel, e.g. an AVX2 station running a bundle exported with AVX-512."""
GRID = 4
"""A map summary keeps the mean of each cell of a GRID x GRID grid (and the map's maximum)."""
NON_FINITE_DRIFT = 1e6
"""How a NaN/inf output's (infinite) drift is shown in JSON, which has no infinity."""
DEFAULT_TOLERANCE = 0.01
"""Largest drift, in normalised units, a station accepts (1 % of the calibrated range)."""


@dataclass(frozen=True)
class MapSummary:
    """A raw (h, w) anomaly map's maximum and ``GRID`` x ``GRID`` cell means (row-major)."""

    max: float
    grid: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.grid) != GRID * GRID:
            raise ValueError(f"map grid must have {GRID * GRID} cells, got {len(self.grid)}")
        if not all(np.isfinite([self.max, *self.grid])):
            raise ValueError("map summary values must be finite")


@dataclass(frozen=True)
class GoldenImage:
    """One golden PNG of the bundle and its raw outputs; ``margin``: |served score - threshold|
    / score scale at export, the drift that would flip its verdict (None in older records)."""

    file: str
    raw_score: float
    map: MapSummary
    margin: float | None = None

    def __post_init__(self) -> None:
        if not self.file.startswith(f"{GOLDEN_DIR}/"):
            raise ValueError(f"golden image {self.file!r} must be under {GOLDEN_DIR}/")
        if not np.isfinite(self.raw_score):
            raise ValueError(f"golden raw score of {self.file} must be finite")
        if self.margin is not None and not self.margin >= 0:
            raise ValueError(f"golden margin of {self.file} must be >= 0, got {self.margin}")


@dataclass(frozen=True)
class GoldenOutputs:
    """The golden record of a bundle: ``score_scale``/``map_scale``, raw units per normalised
    unit at export; ``precision`` OpenVINO executed (``f32``, ``bf16``) on the CPU
    ``recorded_on``; ``tolerance``: the largest drift a station accepts."""

    images: tuple[GoldenImage, ...]
    score_scale: float
    map_scale: float
    tolerance: float = DEFAULT_TOLERANCE
    precision: str = ""
    recorded_on: str = ""

    def __post_init__(self) -> None:
        if not self.images:
            raise ValueError("golden outputs need at least one image")
        if not (self.score_scale > 0 and self.map_scale > 0):
            raise ValueError(
                f"golden scales must be > 0, got score {self.score_scale}, map {self.map_scale}"
            )
        if not 0 < self.tolerance < 1:
            raise ValueError(f"golden tolerance must be in (0, 1), got {self.tolerance}")

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(image.file for image in self.images)


@dataclass(frozen=True)
class GoldenDrift:
    """One golden image on the station: drift of its score and map summary (normalised units);
    ``allowed``: the score drift it tolerates (its margin, at most the tolerance)."""

    file: str
    score: float
    map: float
    allowed: float = DEFAULT_TOLERANCE

    @property
    def worst(self) -> float:
        return max(self.score, self.map)

    @property
    def may_flip(self) -> bool:
        """Its score drifted as far as its margin: its verdict could flip."""
        return self.score > 0 and self.score >= self.allowed


@dataclass(frozen=True)
class GoldenCheck:
    """Outcome of running a bundle's golden images here: ``precision`` OpenVINO executed and
    the CPU ``kernels`` it chose (e.g. ``brgemm_avx512_amx_bf16``: the ISA actually run)."""

    bundle: str
    drifts: tuple[GoldenDrift, ...]
    tolerance: float
    precision: str = ""
    reference_precision: str = ""
    kernels: tuple[str, ...] = ()

    @property
    def worst_drift(self) -> float:
        return max((d.worst for d in self.drifts), default=0.0)

    @property
    def worst_file(self) -> str:
        return max(self.drifts, key=lambda d: d.worst).file if self.drifts else ""

    @property
    def flipping(self) -> tuple[GoldenDrift, ...]:
        """The images whose score drifted as far as their margin to the threshold."""
        return tuple(d for d in self.drifts if d.may_flip)

    @property
    def passed(self) -> bool:
        return self.worst_drift <= self.tolerance and not self.flipping

    def message(self) -> str:
        """One line for logs, /healthz and refusals."""
        verdict = "passed" if self.passed else "REFUSED"
        flips = "".join(
            f"; {d.file}'s score drifted {d.score:.4g}, its margin to the threshold is "
            f"{d.allowed:.4g}: its verdict could flip"
            for d in self.flipping
        )
        return (
            f"{self.bundle}: golden check {verdict}: worst drift {self.worst_drift:.4g} "
            f"(max {self.tolerance:g}, normalised units) on {self.worst_file}, executed in "
            f"{self.precision or '?'} (reference {self.reference_precision or '?'}){flips}"
        )

    def summary(self) -> dict[str, object]:
        """The JSON-ready view for ``/healthz``, the bundle status API and the dashboard."""
        return {
            "passed": self.passed,
            "worst_drift": round(min(self.worst_drift, NON_FINITE_DRIFT), 6),
            "tolerance": self.tolerance,
            "worst_image": self.worst_file,
            "images": len(self.drifts),
            "may_flip": [d.file for d in self.flipping],
            "precision": self.precision,
            "reference_precision": self.reference_precision,
            "kernels": list(self.kernels),
        }


class GoldenDriftError(BundleError):
    """A bundle's golden images drift beyond its tolerance on this station: it is refused."""

    def __init__(self, check: GoldenCheck, reason: str = "") -> None:
        super().__init__(check.message() + (f"; {reason}" if reason else ""))
        self.check = check
        self.reason = reason
        """Why it was not re-calibrated instead ('' when the station holds no images for it)."""


@dataclass(frozen=True)
class CalibrationPoint:
    """The raw thresholds and score range of one calibration (before or after)."""

    image_threshold_raw: float
    pixel_threshold_raw: float
    image_min: float
    image_max: float

    @classmethod
    def of(cls, norm: Normalization) -> CalibrationPoint:
        return cls(*(float(getattr(norm, f.name)) for f in fields(cls)))


@dataclass(frozen=True)
class ThresholdCarry:
    """A registry threshold version across a re-calibration: ``value`` (normalised, on the
    export calibration) is served here as ``carried`` (None: not carried, ``how`` says why)."""

    number: int
    value: float
    carried: float | None
    how: str

    def summary(self) -> dict[str, object]:
        """The JSON-ready view (``/healthz``'s ``golden.threshold_carried``, the dashboard)."""
        return {"version": self.number, "from": self.value, "to": self.carried, "how": self.how}


def carry_threshold(
    value: float,
    good_before: Sequence[float],
    good_after: Sequence[float],
    budget: float | None = None,
) -> tuple[float | None, str]:
    """(threshold, how) or (None, why not): normalised threshold ``value`` re-derived on the
    station's ``good_after`` scores at the budget it meant: ``budget`` as recorded (kept with
    ``BUDGET_CONFIDENCE``), else its split-conformal level on the bundle's ``good_before``."""
    if budget is not None:  # saved on the Thresholds page: kept as the page keeps it
        return _at_budget(
            good_after, budget, f"it was set at, {budget:.2%}", confidence=BUDGET_CONFIDENCE
        )
    before = np.asarray(good_before, dtype=np.float64)
    if before.size == 0:
        return None, (
            "the bundle ships no labelled good validation scores (validation_scores.json) to "
            "tell which false-reject budget it meant"
        )
    n, rejected = int(before.size), int(is_ng(before, value).sum())
    if rejected == 0:
        return None, (
            f"it lies above all {n} good validation scores of the bundle, which do not tell how "
            "far above the good parts it was meant to sit"
        )
    held = conformal_bound(n, n - rejected)
    if held > MAX_BUDGET:
        return None, (
            f"it rejects {rejected} of the bundle's {n} good validation parts: the false-reject "
            f"budget that holds, {held:.2%}, is above the {MAX_BUDGET:.0%} an operating point "
            "may set"
        )
    return _at_budget(
        good_after,
        held,
        f"it held, {held:.2%} ({rejected} of the bundle's {n} good validation parts at or "
        "above it)",
    )


def _at_budget(
    good_after: Sequence[float], budget: float, which: str, confidence: float | None = None
) -> tuple[float | None, str]:
    """(threshold, how) or (None, why not): ``choose_threshold`` at ``budget`` on the station's
    ``good_after`` scores; ``which`` names the budget ("it was set at, 1.00%")."""
    after = np.asarray(good_after, dtype=np.float64)
    if after.size == 0:
        return None, "the station's re-calibration used no good images"
    choice = choose_threshold(after, OperatingPoint(budget=budget), confidence=confidence)
    if not choice.sufficient:
        return None, (
            f"the false-reject budget {which}: it needs {choice.n_needed} good images here, "
            f"the station's folder holds {after.size}"
        )
    try:
        carried = check_threshold(choice.threshold)
    except ValueError as exc:
        return None, f"the false-reject budget {which}: it gives no threshold here ({exc})"
    return carried, (
        f"re-derived at the false-reject budget {which}, on this station's {after.size} "
        f"re-calibrated good images (above the {choice.rank}-th)"
    )


@dataclass(frozen=True)
class Recalibration:
    """A drifting bundle re-calibrated on this station's own validation images; the bundle's
    ``good_before`` and this station's ``good_after`` scores carry a threshold across."""

    bundle: str
    folder: str
    operating: str
    n_good: int
    n_defective: int
    before: CalibrationPoint
    after: CalibrationPoint
    false_reject_bound: float | None = None
    miss: float | None = None
    good_before: tuple[float, ...] = ()
    good_after: tuple[float, ...] = ()

    def carry(self, number: int, value: float, budget: float | None = None) -> ThresholdCarry:
        """Threshold version ``number`` carried to this calibration (``carry_threshold``)."""
        carried, how = carry_threshold(value, self.good_before, self.good_after, budget)
        return ThresholdCarry(number, float(value), carried, how)

    def summary(self) -> dict[str, object]:
        return {
            "folder": self.folder,
            "operating_point": self.operating,
            "n_good": self.n_good,
            "n_defective": self.n_defective,
            "before": to_mapping(self.before),
            "after": to_mapping(self.after),
            "false_reject_bound": self.false_reject_bound,
            "miss": self.miss,
        }


def golden_status(
    bundle_id: str,
    check: GoldenCheck | None,
    recalibration: Recalibration | None = None,
    refusal: str = "",
) -> dict[str, object]:
    """``/healthz``'s and the dashboard's view of a product's last golden check (``outcome``:
    passed, recalibrated, refused or unchecked); ``refusal``: why it was not re-calibrated."""
    if check is None:
        return {"bundle_id": bundle_id, "checked": False, "passed": None, "worst_drift": None,
                "outcome": "unchecked"}  # fmt: skip
    outcome = "passed" if check.passed else "refused"
    outcome = outcome if recalibration is None else "recalibrated"
    status: dict[str, object] = {
        "bundle_id": bundle_id, "checked": True, **check.summary(), "outcome": outcome,
    }  # fmt: skip
    if recalibration is not None:
        status["recalibration"] = recalibration.summary()
    if refusal:
        status["refusal"] = refusal
    return status


def _finite(drift: float) -> float:
    """A NaN or infinite drift (the graph returned NaN/inf) counts as infinitely far."""
    return drift if np.isfinite(drift) else float("inf")


def summarize_map(raw_map: np.ndarray) -> MapSummary:
    """(h, w) float raw anomaly map (h, w >= ``GRID``) -> its ``MapSummary``."""
    values = _summary_values(raw_map)
    return MapSummary(max=float(values[0]), grid=tuple(float(v) for v in values[1:]))


def _summary_values(raw_map: np.ndarray) -> np.ndarray:
    """(1 + GRID * GRID,) float64: the map maximum then its cell means (NaN kept)."""
    raw_map = np.asarray(raw_map, dtype=np.float64)
    if raw_map.ndim != 2 or min(raw_map.shape) < GRID:
        raise ValueError(f"anomaly map must be (h, w) with h, w >= {GRID}, got {raw_map.shape}")
    rows = np.array_split(raw_map, GRID, axis=0)
    cells = [cell.mean() for row in rows for cell in np.array_split(row, GRID, axis=1)]
    return np.array([raw_map.max(), *cells], dtype=np.float64)


def golden_scales(normalization: Normalization) -> tuple[float, float]:
    """(score scale, map scale): the raw spans the normalisation maps to one unit; a zero span
    (a degenerate calibration) falls back to the raw threshold's magnitude, or 1."""

    def scale(low: float, high: float, threshold: float) -> float:
        span = float(high) - float(low)
        return span if span > 0 else (abs(float(threshold)) or 1.0)

    norm = normalization
    return (
        scale(norm.image_min, norm.image_max, norm.image_threshold_raw),
        scale(norm.pixel_min, norm.pixel_max, norm.pixel_threshold_raw),
    )


def golden_margins(served: np.ndarray, normalization: Normalization) -> np.ndarray:
    """(N,) normalised distance of served raw scores to the image threshold."""
    threshold = float(normalization.image_threshold_raw)
    scale = golden_scales(normalization)[0]
    return np.abs(np.asarray(served, dtype=np.float64) - threshold) / scale


def choose_golden(margins: np.ndarray) -> list[int]:
    """Indices of the golden images among candidates in preference order (good and defective
    alternating) with their (N,) ``margins``: the first ``GOLDEN_IMAGES``, then the
    ``NEAR_THRESHOLD`` others nearest the threshold; none closer to it than ``MIN_MARGIN``."""
    clear = [i for i in range(len(margins)) if margins[i] >= MIN_MARGIN]
    first = clear[:GOLDEN_IMAGES]
    later = set(clear[GOLDEN_IMAGES:])
    rest = [int(i) for i in np.argsort(margins, kind="stable") if i in later]
    return first + rest[:NEAR_THRESHOLD]


def golden_outputs(
    files: Sequence[str],
    scores: np.ndarray,
    maps: np.ndarray,
    normalization: Normalization,
    *,
    served: np.ndarray | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    precision: str = "",
    recorded_on: str = "",
) -> GoldenOutputs:
    """The golden record of ``files`` from their raw ``scores`` (N,) and ``maps`` (N, h, w);
    ``served`` (N,): the scores verdicts use (ROI-masked; default ``scores``), for margins."""
    if not len(files) == len(scores) == len(maps):
        raise ValueError(
            f"need one score and one map per golden file, got {len(files)} files, "
            f"{len(scores)} scores, {len(maps)} maps"
        )
    score_scale, map_scale = golden_scales(normalization)
    margins = golden_margins(scores if served is None else served, normalization)
    images = tuple(
        GoldenImage(file, float(score), summarize_map(raw_map), round(float(margin), 6))
        for file, score, raw_map, margin in zip(files, scores, maps, margins, strict=True)
    )
    return GoldenOutputs(images, score_scale, map_scale, tolerance, precision, recorded_on)


def compare_golden(
    golden: GoldenOutputs,
    scores: np.ndarray,
    maps: np.ndarray,
    *,
    bundle: str = "",
    precision: str = "",
    kernels: Sequence[str] = (),
) -> GoldenCheck:
    """The station's raw ``scores`` (N,) and ``maps`` (N, h, w) of the golden images vs the
    record: per image |d score| / score scale and the largest |d| of the map summary / scale."""
    if not len(golden.images) == len(scores) == len(maps):
        raise ValueError(
            f"need outputs for the {len(golden.images)} golden images, got {len(scores)} "
            f"scores and {len(maps)} maps"
        )
    drifts = []
    for image, score, raw_map in zip(golden.images, scores, maps, strict=True):
        here = _summary_values(raw_map)
        map_diff = np.abs(here - np.array([image.map.max, *image.map.grid]))
        score_drift = abs(float(score) - image.raw_score) / golden.score_scale
        map_drift = float(map_diff.max()) / golden.map_scale
        allowed = golden.tolerance if image.margin is None else min(golden.tolerance, image.margin)
        drifts.append(GoldenDrift(image.file, _finite(score_drift), _finite(map_drift), allowed))
    return GoldenCheck(
        bundle=bundle,
        drifts=tuple(drifts),
        tolerance=golden.tolerance,
        precision=precision,
        reference_precision=golden.precision,
        kernels=tuple(kernels),
    )
