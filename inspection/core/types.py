"""The one result type every layer speaks: an inspection of one image."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from inspection.core.threshold import VERDICTS, Verdict, verdict_of

AffineMatrix = tuple[float, float, float, float, float, float]
"""A (2, 3) affine transform, row-major."""

Progress = Callable[[str], None]
"""Receives one human-readable line per step of a long job (tuning, export, retraining)."""


@dataclass(frozen=True)
class DefectRegion:
    """One connected defect region in input-image pixels: ``box`` (x0, y0, x1, y1), upper
    bounds exclusive; ``peak`` (x, y) of its highest anomaly score; ``area`` in pixels."""

    box: tuple[int, int, int, int]
    area: int
    peak: tuple[int, int]
    max_score: float
    mean_score: float
    area_mm2: float | None = None
    """Area in mm² when the product has a pixel size (``core.units``); likewise the _mm sides."""
    length_mm: float | None = None
    length: float | None = None
    """Long side of the region's minimum-area rotated rectangle, pixels (a crack's length)."""
    width: float | None = None
    """Short side of that rectangle, pixels (a crack's width); None: not measured."""
    width_mm: float | None = None

    def __post_init__(self) -> None:
        if len(self.box) != 4:
            raise ValueError(f"box must be (x0, y0, x1, y1), got {self.box!r}")
        x0, y0, x1, y1 = self.box
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"box must have x1 > x0 and y1 > y0, got {self.box!r}")
        if self.area <= 0:
            raise ValueError(f"area must be positive, got {self.area}")

    def to_dict(self) -> dict:
        sizes = {} if self.area_mm2 is None else {"area_mm2": round(float(self.area_mm2), 4)}
        for name in ("length", "width", "length_mm", "width_mm"):
            if getattr(self, name) is not None:
                sizes[name] = round(float(getattr(self, name)), 3)
        return {
            "box": list(self.box),
            "area": int(self.area),
            "peak": list(self.peak),
            "max_score": float(self.max_score),
            "mean_score": float(self.mean_score),
            **sizes,
        }


@dataclass(frozen=True)
class InspectionResult:
    """The judgement of one image: ``score`` and ``threshold`` normalised, in [0, 1];
    ``anomaly_map`` (H, W) float32 in [0, 1] at the input resolution and ``mask`` (H, W) bool;
    ``candidates``: regions found on an OK image, not defects. The verdict rule of
    ``core.verdict`` is enforced: NG exactly when ``score >= threshold`` (and the minimum area),
    with a region and a non-empty mask; an OK carries no region and an empty mask."""

    score: float
    threshold: float
    verdict: Verdict
    anomaly_map: np.ndarray
    mask: np.ndarray
    regions: tuple[DefectRegion, ...]
    latency_ms: float
    model_version: str
    mask_source: str = "raw"
    timings_ms: dict[str, float] = field(default_factory=dict)
    candidates: tuple[DefectRegion, ...] = ()
    components: dict[str, float] = field(default_factory=dict)
    """Per-component z-scores of a fused score (``core.global_context``); empty otherwise."""
    min_defect_area: float | None = None
    """Regions smaller than this many pixels make no NG (``core.verdict``); None: any size."""
    alignment: AffineMatrix | None = None
    """The (2, 3) affine from reference to camera pixels when the image was aligned first
    (``runtime.alignment``); map, mask and regions are then in reference pixels."""
    camera_size: tuple[int, int] | None = None
    """(H, W) at full resolution when judged on a reduced working copy (``runtime.bounds``):
    pixel quantities are then working pixels, ``camera_regions`` scales the regions back."""
    input_warnings: tuple[str, ...] = ()
    """Why the image lies outside the input domain, judged anyway (``input_check: warn``)."""

    def __post_init__(self) -> None:
        if self.alignment is not None and (
            len(self.alignment) != 6 or not np.isfinite(self.alignment).all()
        ):
            raise ValueError(
                f"alignment must be 6 finite numbers (a 2x3 affine), got {self.alignment}"
            )
        if self.camera_size is not None and (
            len(self.camera_size) != 2 or min(self.camera_size) < 1
        ):
            raise ValueError(f"camera_size must be (H, W) >= 1, got {self.camera_size}")
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if not 0.0 <= self.score <= 1.0 or not np.isfinite(self.score):
            raise ValueError(f"score must be a finite number in [0, 1], got {self.score}")
        amap, mask = self.anomaly_map, self.mask
        if not isinstance(amap, np.ndarray) or amap.ndim != 2 or amap.dtype != np.float32:
            raise ValueError(
                "anomaly_map must be a (H, W) float32 array, got "
                f"{getattr(amap, 'shape', type(amap))} {getattr(amap, 'dtype', '')}"
            )
        if not isinstance(mask, np.ndarray) or mask.shape != amap.shape or mask.dtype != bool:
            raise ValueError(
                f"mask must be a bool array of shape {amap.shape}, got "
                f"{getattr(mask, 'shape', type(mask))} {getattr(mask, 'dtype', '')}"
            )
        if self.latency_ms < 0:
            raise ValueError(f"latency_ms must be >= 0, got {self.latency_ms}")
        self._check_verdict()

    def _check_verdict(self) -> None:
        found = self.regions if self.verdict == "NG" else self.candidates
        largest = max((r.area for r in found), default=0)
        expected = verdict_of(self.score, self.threshold, largest, self.min_defect_area)
        if self.verdict != expected:
            raise ValueError(
                f"verdict {self.verdict} contradicts score {self.score} vs threshold "
                f"{self.threshold} and largest region {largest} px vs minimum "
                f"{self.min_defect_area} (NG exactly when score >= threshold and a region "
                "reaches the minimum defect area)"
            )
        has_mask = bool(self.mask.any())
        if self.verdict == "NG" and (not self.regions or not has_mask):
            raise ValueError(
                f"an NG result must carry at least one region and a non-empty mask, got "
                f"{len(self.regions)} region(s) and {int(self.mask.sum())} mask pixel(s)"
            )
        if self.verdict == "OK" and (self.regions or has_mask):
            raise ValueError(
                f"an OK result carries no defect region (use candidates), got "
                f"{len(self.regions)} region(s) and {int(self.mask.sum())} mask pixel(s)"
            )

    @property
    def is_defective(self) -> bool:
        return self.verdict == "NG"

    @property
    def frame(self) -> Literal["camera", "reference"]:
        """Pixel frame of map, mask and regions: "reference" after alignment, else "camera"."""
        return "camera" if self.alignment is None else "reference"

    @property
    def camera_regions(self) -> tuple[DefectRegion, ...]:
        """``regions`` at full resolution (scaled from a working copy; see ``camera_size``)."""
        if self.camera_size is None:
            return self.regions
        return scale_regions(self.regions, self.anomaly_map.shape, self.camera_size)

    @property
    def driver(self) -> str | None:
        """The component whose z-score set the fused score (None without components)."""
        if not self.components:
            return None
        return max(self.components, key=lambda name: self.components[name])

    def summary(self) -> dict:
        """JSON-ready fields without the arrays."""
        out: dict[str, object] = {
            "score": round(float(self.score), 6),
            "threshold": float(self.threshold),
            "verdict": self.verdict,
            "model_version": self.model_version,
            "latency_ms": round(float(self.latency_ms), 3),
            "mask_source": self.mask_source,
            "regions": [region.to_dict() for region in self.camera_regions],
            "candidates": [region.to_dict() for region in self.candidates],
            "height": int((self.camera_size or self.anomaly_map.shape)[0]),
            "width": int((self.camera_size or self.anomaly_map.shape)[1]),
        }
        if self.camera_size is not None:
            out["work_size"] = [int(v) for v in self.anomaly_map.shape]
        if self.components:
            out["components"] = {k: round(float(v), 4) for k, v in self.components.items()}
            out["driver"] = self.driver
        if self.input_warnings:
            out["input_warnings"] = list(self.input_warnings)
        return out


def scale_regions(
    regions: tuple[DefectRegion, ...], size: tuple[int, int], target: tuple[int, int]
) -> tuple[DefectRegion, ...]:
    """``regions`` of an image of ``size`` (h, w) in pixels of the same view at ``target``
    (H, W): boxes cover every target pixel under the source box, peaks move to the centre of
    their pixel, areas scale with the pixel ratio; scores and mm sizes are unchanged."""
    if tuple(size) == tuple(target):
        return regions
    sy, sx = target[0] / size[0], target[1] / size[1]
    scaled = []
    for region in regions:
        x0, y0, x1, y1 = region.box
        left, top = int(np.floor(x0 * sx)), int(np.floor(y0 * sy))
        box = (
            left,
            top,
            min(target[1], max(left + 1, int(np.ceil(x1 * sx)))),
            min(target[0], max(top + 1, int(np.ceil(y1 * sy)))),
        )
        peak = (
            min(target[1] - 1, int((region.peak[0] + 0.5) * sx)),
            min(target[0] - 1, int((region.peak[1] + 0.5) * sy)),
        )
        area = max(1, round(region.area * sx * sy))
        side = np.sqrt(sx * sy)  # exact for the usual uniform scale
        length = None if region.length is None else region.length * side
        width = None if region.width is None else region.width * side
        scaled.append(
            dataclasses.replace(region, box=box, peak=peak, area=area, length=length, width=width)
        )
    return tuple(scaled)
