"""Tiled inspection at native resolution on the line station (torch-free).

    tiled = TiledInspector.from_bundle("var/registry/hires/bundles/v0001-fp32")
    result = tiled.inspect(read_image("part.png"))   # (H, W, 3) uint8 RGB, e.g. 2448x2048

The bundle's ``tiling`` (``core.tiling.TilingSpec``) drives it: the image is resized by
``scale``, normalised once and cut into tiles, which run as one batch; the tile maps are
stitched and judged by the one verdict rule in original pixels. The raw image score is the
highest tile score.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspection.core.bundle import BundleMetadata
from inspection.core.errors import BundleError
from inspection.core.golden import GoldenCheck, Recalibration
from inspection.core.images import read_image
from inspection.core.input_domain import InputCheck, input_check_mode
from inspection.core.tiling import TileGrid, TilingSpec, cut, stitch
from inspection.core.types import AffineMatrix, InspectionResult
from inspection.runtime.camera import CameraOptions, work_size
from inspection.runtime.inspector import Inspector, RawImageOutputs
from inspection.runtime.model import BundleModel
from inspection.runtime.preprocess import check_image, preprocess


@dataclass(frozen=True)
class TiledOutputs:
    """Raw outputs of one image: the highest tile ``score``, the stitched (h, w) float32
    ``anomaly_map`` and ``image``, the (H, W, 3) uint8 RGB image as inferred (aligned)."""

    score: float
    anomaly_map: np.ndarray
    tiles: int
    timings_ms: dict[str, float]
    image: np.ndarray
    alignment: AffineMatrix | None = None
    """The matrix the image was aligned with (``InspectionResult.alignment``); None: unaligned."""
    input_warnings: tuple[str, ...] = ()
    """Input-domain problems judged anyway (``Inspector.admit``, ``input_check="warn"``)."""


class TiledInspector:
    """Runs a tiled bundle. Build with ``TiledInspector.from_bundle``."""

    def __init__(self, inspector: Inspector) -> None:
        tiling = inspector.metadata.tiling
        if tiling is None:
            raise BundleError(
                f"{inspector.bundle_dir}: the bundle has no tiling; use Inspector.from_bundle"
            )
        if inspector.metadata.global_context is not None:
            raise BundleError(f"{inspector.bundle_dir}: tiled bundles carry no global context")
        self.inspector = inspector
        self.tiling: TilingSpec = tiling

    @classmethod
    def from_bundle(cls, path: str | Path, **options: Any) -> TiledInspector:
        """Verify and compile the bundle (``options``: as ``Inspector.from_bundle``)."""
        return cls(Inspector.from_bundle(path, **options))

    @property
    def metadata(self) -> BundleMetadata:
        return self.inspector.metadata

    @property
    def model(self) -> BundleModel:
        return self.inspector.model

    @property
    def threshold(self) -> float:
        return self.inspector.threshold

    @property
    def model_version(self) -> str:
        return self.inspector.model_version

    @property
    def golden(self) -> GoldenCheck | None:
        return self.inspector.golden

    @property
    def recalibration(self) -> Recalibration | None:
        """Always None: tiled bundles are re-exported, not re-calibrated at load."""
        return self.inspector.recalibration

    # The station sets these on whatever its loader returns (``station.core``, ``runtime.camera``).
    @property
    def input_check(self) -> InputCheck:
        return self.inspector.input_check

    @input_check.setter
    def input_check(self, value: InputCheck) -> None:
        self.inspector.input_check = input_check_mode(value)

    @property
    def camera(self) -> CameraOptions:
        return self.inspector.camera

    @camera.setter
    def camera(self, options: CameraOptions) -> None:
        self.inspector.camera = options

    # ----------------------------------------------------------------- inference
    def tile_inputs(self, image: np.ndarray) -> tuple[TileGrid, np.ndarray]:
        """The grid of ``image`` and its tiles as model input, (N, 3, th, tw) float32.

        A bundle trained with its ROI runs only the tiles holding an ROI pixel (as trained)."""
        check_image(image)
        grid = self.tiling.grid(*image.shape[:2])
        if self.metadata.training_roi is not None and self.metadata.roi is not None:
            grid = grid.inside(self.metadata.roi)
        prep = dataclasses.replace(self.metadata.preprocessing, input_size=grid.size)
        return grid, cut(preprocess(image, prep), grid, channels_first=True)

    def infer_tiles(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3, th, tw) tiles -> raw scores (N,) and raw maps (N, th, tw) float32 (no ROI:
        the product's ROI is in whole-image pixels and applies to the stitched map)."""
        outputs = self.inspector.model.run(tiles)
        return outputs.scores, outputs.maps

    def raw_outputs(self, image: np.ndarray) -> TiledOutputs:
        """Admit, cut, infer and stitch one (H, W, 3) uint8 RGB image (raw, not normalised);
        ``InputDomainError`` or ``AlignmentError`` when it is refused (``Inspector.prepare``)."""
        start = time.perf_counter()
        ready = self.inspector.prepare(image)
        grid, tiles = self.tile_inputs(ready.image)
        prepared = time.perf_counter()
        scores, maps = self.infer_tiles(tiles)
        inferred = time.perf_counter()
        stitched = stitch(maps, grid, self.tiling.blend)
        timings = {
            "preprocess": (prepared - start) * 1e3,
            "infer": (inferred - prepared) * 1e3,
            "stitch": (time.perf_counter() - inferred) * 1e3,
        }
        score, stitched = self.inspector.model.restrict(float(scores.max()), stitched)
        return TiledOutputs(
            score, stitched, len(grid), timings, ready.image, ready.alignment, ready.input_warnings
        )

    def inspect(
        self, image: np.ndarray, *, threshold: float | None = None, started: float | None = None
    ) -> InspectionResult:
        """Judge one full-resolution image: tiles inferred at full resolution, map and regions
        judged on the bounded working copy. ``started``: as for ``Inspector.inspect``."""
        start = time.perf_counter() if started is None else started
        raw = self.raw_outputs(image)
        outputs = RawImageOutputs(
            raw.image, raw.score, raw.anomaly_map, start, raw.timings_ms,
            alignment=raw.alignment, input_warnings=raw.input_warnings,
        )  # fmt: skip
        return self.inspector.judge_raw(outputs, threshold=threshold)

    def inspect_batch(self, images: Sequence[np.ndarray]) -> list[InspectionResult]:
        """Judge full-resolution images one after another (each is a batch of tiles)."""
        return [self.inspect(image) for image in images]


def evaluation_size(size: tuple[int, int], max_side: int = 512) -> tuple[int, int]:
    """The map size at which tiled outputs are calibrated and measured: (h, w) ``size`` shrunk
    (aspect kept) so its long side is at most ``max_side``."""
    return work_size(size, max_side)


def tiled_outputs(
    tiled: TiledInspector, paths: Sequence[Path], max_side: int = 512
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Raw scores (N,) float32 and stitched raw maps (N, h, w) float32 of image files, the maps
    area-resized to one ``evaluation_size`` (that of the first image), and that size."""
    scores, maps = [], []
    size: tuple[int, int] | None = None
    for path in paths:
        raw = tiled.raw_outputs(read_image(path, bits=tiled.metadata.preprocessing.source_bits))
        size = size or evaluation_size(raw.anomaly_map.shape, max_side)
        scores.append(raw.score)
        maps.append(cv2.resize(raw.anomaly_map, (size[1], size[0]), interpolation=cv2.INTER_AREA))
    if size is None:
        raise BundleError("cannot run a tiled bundle on no images")
    return np.asarray(scores, np.float32), np.stack(maps).astype(np.float32), size
