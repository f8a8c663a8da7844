"""A model's raw outputs on labelled images (export's bundle run, tiled training's torch run),
which calibrate themselves and are measured at a calibration through the one verdict rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from inspection.core.calibration import Calibration, calibrate
from inspection.core.export_gate import BundleFigures, measure
from inspection.core.images import read_mask
from inspection.core.metrics import EvaluationMetrics
from inspection.core.operating_point import OperatingPoint


class LabelledImage(Protocol):
    """What ``RawOutputs.of_samples`` reads of a sample (``data.Sample``, ``LabelledSample``)."""

    @property
    def label(self) -> int: ...

    @property
    def defect_type(self) -> str: ...

    @property
    def mask_path(self) -> Path | None: ...


@dataclass(frozen=True)
class RawOutputs:
    """Raw outputs on N labelled images: scores (N,) float64, maps (N, h, w) float32, labels
    (N,) int64 0 good / 1 defective, masks (N, h, w) bool resized (nearest) to the map,
    mask_known (N,) False for a defective image without a mask file, N defect_types."""

    scores: np.ndarray
    maps: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    mask_known: np.ndarray
    defect_types: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.scores)
        if self.scores.shape != (n,) or self.maps.ndim != 3 or len(self.maps) != n:
            raise ValueError(
                f"RawOutputs needs scores (N,) and maps (N, h, w); got {self.scores.shape} "
                f"and {self.maps.shape}"
            )
        if self.masks.shape != self.maps.shape:
            raise ValueError(f"masks: expected {self.maps.shape}, got {self.masks.shape}")
        sizes = (len(self.labels), len(self.mask_known), len(self.defect_types))
        if sizes != (n, n, n):
            raise ValueError(
                f"labels, mask_known and defect_types need {n} entries each, got {sizes}"
            )

    @classmethod
    def of_samples(
        cls, samples: Sequence[LabelledImage], scores: np.ndarray, maps: np.ndarray
    ) -> RawOutputs:
        """Outputs ``scores`` (N,) and ``maps`` (N, h, w) on ``samples`` (in order) with their
        labels, defect types and masks read at (h, w) (a defective one without: unknown)."""
        height, width = maps.shape[1:]
        return cls(
            scores=np.asarray(scores, dtype=np.float64),
            maps=np.asarray(maps, dtype=np.float32),
            labels=np.asarray([s.label for s in samples], dtype=np.int64),
            masks=np.stack(
                [read_mask(s.mask_path if s.label else None, (height, width)) for s in samples]
            ),
            mask_known=np.asarray([s.label == 0 or s.mask_path is not None for s in samples]),
            defect_types=tuple(s.defect_type for s in samples),
        )

    @property
    def _labelled(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
        """The leading arguments of ``calibrate`` and ``measure``, in their order."""
        return self.scores, self.maps, self.labels, self.masks, self.defect_types

    def calibrate(self, point: OperatingPoint | None = None) -> Calibration:
        """The calibration these validation outputs set at ``point`` (``calibrate``)."""
        return calibrate(*self._labelled, mask_known=self.mask_known, point=point)

    def measure(self, calibration: Calibration) -> tuple[EvaluationMetrics, BundleFigures]:
        """Metrics and gated figures when judged at ``calibration`` (``export_gate.measure``)."""
        return measure(*self._labelled, calibration, mask_known=self.mask_known)
