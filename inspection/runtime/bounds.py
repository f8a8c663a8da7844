"""Camera resolution without stalls: every per-image stage is bounded by a working size.

A 25 MP image carries no more for a 256 px model than a 1 MP copy, but judging it at full size
costs minutes. So it is decoded once (``Reading``; a camera's pixels are taken as they are,
``Reading.adopt``), reduced to a longer side of ``work_max_side``, into the ``DecodedImage``
every stage takes: inference on its working copy (the result recording the camera's size,
``with_camera_size``), refinement, storage (``stored_copy``). Refinement runs only when its
predicted cost fits the latency budget (``RefineGate``).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

import cv2
import numpy as np

from inspection.core.bundle import BundleMetadata
from inspection.core.images import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_SIDE,
    DEFAULT_SOURCE_BITS,
    DecodedImage,
    adopt_pixels,
    decode_reduced,
    read_reduced,
)
from inspection.core.types import InspectionResult
from inspection.refine.base import MaskRefiner

DEFAULT_WORK_MAX_SIDE = 1024
"""Longer side of the working copy: 4x the demo models' 256 px input, about 1 MP."""
PRIOR_NS_PER_PIXEL = 2_000.0
"""Refinement cost per working-image pixel of the judged regions' crops before any was
measured (GrabCut, 2 iterations; taken high on purpose)."""


@dataclass(frozen=True)
class CameraOptions:
    """Per-product bounds: the longer side of the judged copy, and what the whole inspection
    may take (refinement skipped when it would not fit; None: always refined)."""

    work_max_side: int = DEFAULT_WORK_MAX_SIDE
    latency_budget_ms: float | None = None

    def __post_init__(self) -> None:
        if self.work_max_side < 1:
            raise ValueError(f"work_max_side must be >= 1, got {self.work_max_side}")
        budget = self.latency_budget_ms
        if budget is not None and not (np.isfinite(budget) and budget > 0):
            raise ValueError(f"latency_budget_ms must be > 0 (or null), got {budget}")

    def work_side(self, input_size: tuple[int, int]) -> int:
        """The working longer side for a model of ``input_size`` (h, w): never below it."""
        return max(self.work_max_side, *input_size)


@dataclass(frozen=True)
class BoundsConfig:
    """The station core's ``bounds:`` section: default ``CameraOptions``, per-product
    overrides, ``keep_originals`` (store a reduced image's upload, else its working copy)."""

    work_max_side: int = DEFAULT_WORK_MAX_SIDE
    latency_budget_ms: float | None = None
    products: dict[str, CameraOptions] = field(default_factory=dict)
    keep_originals: bool = False
    overlay_max_side: int = 1024

    def __post_init__(self) -> None:
        CameraOptions(self.work_max_side, self.latency_budget_ms)  # same checks
        if self.overlay_max_side < 1:
            raise ValueError(f"overlay_max_side must be >= 1, got {self.overlay_max_side}")

    def options(self, product: str) -> CameraOptions:
        """The product's options (its override, else the defaults)."""
        default = CameraOptions(self.work_max_side, self.latency_budget_ms)
        return self.products.get(product, default)


class Bounded(Protocol):
    """A predictor with its bundle's metadata and per-product ``CameraOptions``."""

    camera: CameraOptions

    @property
    def metadata(self) -> BundleMetadata: ...


B = TypeVar("B", bound=Bounded)


def bounded_loader(loader: Callable[[Path], B], config: BoundsConfig) -> Callable[[Path], B]:
    """``loader`` whose inspectors get their product's ``CameraOptions`` from ``config``."""

    def load(bundle_dir: Path) -> B:
        inspector = loader(bundle_dir)
        inspector.camera = config.options(inspector.metadata.product)
        return inspector

    return load


@dataclass(frozen=True)
class Reading:
    """How a bundle's images are decoded, once each (``Reading.of``): reduced to a longer side
    of ``work_side`` (None: full size, a tiled bundle), 16-bit files at ``bits`` significant
    bits and signed or float files in ``value_range`` (the bundle's ``source_bits`` and
    ``source_range``: read as its training images were; ``core.images.decode_reduced``)."""

    work_side: int | None
    bits: int = DEFAULT_SOURCE_BITS
    value_range: tuple[float, float] | None = None

    @classmethod
    def of(cls, predictor: Bounded) -> Reading:
        """The reading of ``predictor``'s bundle at its working size."""
        metadata, prep = predictor.metadata, predictor.metadata.preprocessing
        side = None if metadata.tiling is not None else predictor.camera.work_side(prep.input_size)
        return cls(side, prep.source_bits, prep.source_range)

    def decode(
        self,
        data: bytes,
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_side: int = DEFAULT_MAX_SIDE,
        formats: tuple[str, ...] | None = None,
        name: str = "image",
    ) -> DecodedImage:
        """Encoded bytes -> the ``DecodedImage`` (limits and errors: ``decode_reduced``)."""
        return decode_reduced(
            data, work_side=self.work_side, bits=self.bits, value_range=self.value_range,
            max_pixels=max_pixels, max_side=max_side, formats=formats, name=name,
        )  # fmt: skip

    def adopt(
        self,
        pixels: np.ndarray,
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_side: int = DEFAULT_MAX_SIDE,
        name: str = "image",
    ) -> DecodedImage:
        """A camera's pixels ((H, W) or (H, W, 3) uint8, already narrowed to 8 bits) -> the
        ``DecodedImage`` ``decode`` gives for their PNG, with no decode (limits and errors:
        ``core.images.adopt_pixels``)."""
        return adopt_pixels(
            pixels, work_side=self.work_side, max_pixels=max_pixels, max_side=max_side, name=name
        )

    def read(self, path: str | Path) -> DecodedImage:
        """A file -> the ``DecodedImage`` (``core.images.read_reduced``)."""
        return read_reduced(
            path, work_side=self.work_side, bits=self.bits, value_range=self.value_range
        )


def stored_copy(decoded: DecodedImage, *, keep_original: bool) -> bytes | None:
    """PNG bytes of the working copy to store, or None to store the upload as sent."""
    if keep_original or not decoded.reduced:
        return None
    ok, buffer = cv2.imencode(".png", np.ascontiguousarray(decoded.image[:, :, ::-1]))
    if not ok:
        raise ValueError(f"OpenCV could not encode a {decoded.image.shape} image as PNG")
    return buffer.tobytes()


def work_size(shape: tuple[int, ...], max_side: int) -> tuple[int, int]:
    """(h, w) of an image of ``shape`` shrunk to a longer side of ``max_side`` (kept if smaller)."""
    height, width = shape[:2]
    if max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def bounded_image(image: np.ndarray, max_side: int) -> tuple[np.ndarray, tuple[int, int] | None]:
    """(working copy at a longer side of ``max_side``, full (H, W) or None when not reduced)."""
    size = work_size(image.shape, max_side)
    if size == image.shape[:2]:
        return image, None
    small = cv2.resize(image, size[::-1], interpolation=cv2.INTER_AREA)
    return small, (int(image.shape[0]), int(image.shape[1]))


def with_camera_size(result: InspectionResult, decoded: DecodedImage) -> InspectionResult:
    """``result`` of ``decoded``'s working copy recording the camera's size, or, aligned, its
    alignment matrix rescaled to camera pixels."""
    size = (int(decoded.source_size[0]), int(decoded.source_size[1]))
    inspected_size = decoded.image.shape[:2]
    if size == tuple(inspected_size):
        return result
    if result.alignment is not None:
        scale = size[1] / inspected_size[1]
        alignment = tuple(float(v) * scale for v in result.alignment)
        return dataclasses.replace(result, alignment=alignment)  # type: ignore[arg-type]
    return dataclasses.replace(result, camera_size=size)


class RefineGate:
    """Decides whether refinement fits the latency budget: nanoseconds per pixel of the
    regions' crop windows, an exponential average of every refinement run. Thread-safe."""

    def __init__(self, prior_ns_per_pixel: float = PRIOR_NS_PER_PIXEL) -> None:
        self._ns_per_pixel = float(prior_ns_per_pixel)
        self._lock = threading.Lock()

    def predict_ms(self, result: InspectionResult) -> float:
        return refine_pixels(result) * self._ns_per_pixel / 1e6

    def learn(self, pixels: int, elapsed_ms: float) -> None:
        """Fold one refinement's pixels and time into the estimate."""
        if pixels <= 0:
            return
        observed = elapsed_ms * 1e6 / pixels
        with self._lock:
            self._ns_per_pixel = 0.7 * self._ns_per_pixel + 0.3 * observed

    def refine(
        self,
        refiner: MaskRefiner,
        image: np.ndarray,
        result: InspectionResult,
        *,
        started: float,
        budget_ms: float | None,
    ) -> InspectionResult:
        """``refiner.refine_result`` when it fits ``budget_ms`` (from ``started``); else
        ``result`` with ``refine_skipped`` and ``refine_predicted`` timings."""
        predicted = self.predict_ms(result)
        if budget_ms is not None:
            spent = (time.perf_counter() - started) * 1e3
            if spent + predicted > budget_ms:
                timings = {**result.timings_ms, "refine_skipped": 1.0}
                timings["refine_predicted"] = predicted
                return dataclasses.replace(result, timings_ms=timings)
        begin = time.perf_counter()
        refined = refiner.refine_result(image, result)
        elapsed = (time.perf_counter() - begin) * 1e3
        self.learn(refine_pixels(result), elapsed)
        timings = {**refined.timings_ms, "refine": elapsed, "refine_predicted": predicted}
        return dataclasses.replace(refined, timings_ms=timings)


def refine_pixels(result: InspectionResult, margin_fraction: float = 0.25) -> int:
    """Pixels of the regions' boxes grown by ``margin_fraction`` of their longer side per side
    (the classical refiners' crop windows), clipped to the image."""
    height, width = result.anomaly_map.shape
    total = 0
    for region in result.regions:
        x0, y0, x1, y1 = region.box
        margin = max(16, round(margin_fraction * max(x1 - x0, y1 - y0)))
        rows = min(height, y1 + margin) - max(0, y0 - margin)
        cols = min(width, x1 + margin) - max(0, x0 - margin)
        total += rows * cols
    return total
