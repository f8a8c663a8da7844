"""The extension point for mask refinement: one method."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from inspection.core.types import InspectionResult


@runtime_checkable
class MaskRefiner(Protocol):
    """Sharpens the mask of a defective result.

    ``image`` is the inspected (H, W, 3) uint8 RGB image; the returned result has the
    same score and verdict, a refined ``mask``, recomputed ``regions`` and
    ``mask_source`` naming the refiner ("raw" where a region was kept unrefined).
    """

    name: str

    def refine_result(self, image: np.ndarray, result: InspectionResult) -> InspectionResult: ...
