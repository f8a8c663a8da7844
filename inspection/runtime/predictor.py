"""The predictor a bundle needs, and the one protocol every caller of a predictor uses.

    inspector = load_inspector("var/registry/brick/bundles/v0003-int8", public_key=key)
    result = inspector.inspect(read_image("part.png"))      # (H, W, 3) uint8 RGB

``load_inspector`` is what stations, the CLI, export and tuning load a bundle with.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from inspection.core.bundle import BundleMetadata
from inspection.core.golden import GoldenCheck, Recalibration
from inspection.core.input_domain import InputCheck
from inspection.core.types import InspectionResult
from inspection.runtime.camera import CameraOptions
from inspection.runtime.inspector import Inspector
from inspection.runtime.model import BundleModel
from inspection.runtime.tiled import TiledInspector


class Predictor(Protocol):
    """What judges images with one loaded bundle (``Inspector``, ``TiledInspector``): what
    stations, the CLI, tuning and ``runtime.paths`` use. ``inspect`` is safe from several
    threads at once (the model serialises its infer request)."""

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
    """The predictor the bundle at ``path`` needs: ``TiledInspector`` for a tiled
    bundle, else ``Inspector``; ``options`` as ``Inspector.from_bundle`` (``public_key``: the
    pinned site key, checked on the bytes compiled). A tiled bundle run by a plain
    ``Inspector`` squeezes the whole image into one tile."""
    inspector = Inspector.from_bundle(path, **options)
    return inspector if inspector.metadata.tiling is None else TiledInspector(inspector)
