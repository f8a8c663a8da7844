"""Tiled inspection at native resolution on the line station (torch-free).

The bundle's ``tiling`` drives it: the image is resized by ``scale``, normalised once and cut
into tiles run as one batch; the tile maps are stitched and judged in original pixels. The raw
image score is the highest tile score.
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
from inspection.runtime.bounds import CameraOptions, work_size
from inspection.runtime.inspector import Inspector, RawImageOutputs
from inspection.runtime.model import BundleModel
from inspection.runtime.preprocess import check_image, model_input


@dataclass(frozen=True)
class TiledOutputs:
    """Raw outputs of one image: the highest tile score, the stitched map, the image as
    inferred (aligned) with its alignment and input-domain warnings."""

    score: float
    anomaly_map: np.ndarray
    tiles: int
    timings_ms: dict[str, float]
    image: np.ndarray
    alignment: AffineMatrix | None = None
    input_warnings: tuple[str, ...] = ()


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

    # The station sets these on whatever its loader returns (``station.core``, ``runtime.bounds``).
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

    def tile_inputs(self, image: np.ndarray) -> tuple[TileGrid, np.ndarray]:
        """The grid of ``image`` and its tiles as model input ((N, th, tw, 3) uint8 when the
        graph preprocesses, else (N, 3, th, tw) float32); a bundle trained with its ROI runs
        only the tiles holding an ROI pixel."""
        check_image(image)
        grid = self.tiling.grid(*image.shape[:2])
        if self.metadata.training_roi is not None and self.metadata.roi is not None:
            grid = grid.inside(self.metadata.roi)
        prep = dataclasses.replace(self.metadata.preprocessing, input_size=grid.size)
        return grid, cut(model_input(image, prep), grid, channels_first=not prep.in_graph)

    def infer_tiles(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tiles -> raw scores and maps (no ROI: it applies to the stitched map)."""
        outputs = self.inspector.model.run(tiles)
        return outputs.scores, outputs.maps

    def raw_outputs(self, image: np.ndarray) -> TiledOutputs:
        """Admit, cut, infer and stitch one image (raw, not normalised)."""
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
        """Judge one image: tiles at full resolution, map and regions on the working copy."""
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
    """The map size at which tiled outputs are calibrated and measured."""
    return work_size(size, max_side)


def tiled_outputs(
    tiled: TiledInspector, paths: Sequence[Path], max_side: int = 512
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Raw scores and stitched maps of image files at the first one's ``evaluation_size``."""
    scores, maps = [], []
    size: tuple[int, int] | None = None
    for path in paths:
        prep = tiled.metadata.preprocessing
        raw = tiled.raw_outputs(
            read_image(path, bits=prep.source_bits, value_range=prep.source_range)
        )
        size = size or evaluation_size(raw.anomaly_map.shape, max_side)
        scores.append(raw.score)
        maps.append(cv2.resize(raw.anomaly_map, (size[1], size[0]), interpolation=cv2.INTER_AREA))
    if size is None:
        raise BundleError("cannot run a tiled bundle on no images")
    return np.asarray(scores, np.float32), np.stack(maps).astype(np.float32), size
