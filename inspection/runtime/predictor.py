"""The predictor a bundle needs (``load_inspector``), and the protocol every caller uses."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from inspection.core.bundle import BundleMetadata
from inspection.core.golden import GoldenCheck, Recalibration
from inspection.core.input_domain import InputCheck
from inspection.core.types import InspectionResult
from inspection.runtime.bounds import CameraOptions
from inspection.runtime.inspector import Inspector
from inspection.runtime.model import BundleModel
from inspection.runtime.tiled import TiledInspector


class Predictor(Protocol):
    """What judges images with one loaded bundle (``Inspector``, ``TiledInspector``);
    ``inspect`` is thread-safe."""

    input_check: InputCheck
    camera: CameraOptions

    @property
    def metadata(self) -> BundleMetadata: ...

    @property
    def model(self) -> BundleModel: ...

    @property
    def threshold(self) -> float: ...

    @property
    def model_version(self) -> str: ...

    @property
    def golden(self) -> GoldenCheck | None: ...

    @property
    def recalibration(self) -> Recalibration | None: ...

    def inspect(
        self, image: np.ndarray, *, threshold: float | None = None, started: float | None = None
    ) -> InspectionResult: ...

    def inspect_batch(self, images: Sequence[np.ndarray]) -> list[InspectionResult]: ...


def load_inspector(path: str | Path, **options: Any) -> Predictor:
    """``TiledInspector`` for a tiled bundle, else ``Inspector`` (``options``: as
    ``Inspector.from_bundle``)."""
    inspector = Inspector.from_bundle(path, **options)
    return inspector if inspector.metadata.tiling is None else TiledInspector(inspector)
