"""The extension point for mask refinement: one method."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from inspection.core.types import InspectionResult


@runtime_checkable
class MaskRefiner(Protocol):
    """Sharpens the mask of a defective result on its (H, W, 3) uint8 RGB ``image``: same
    score and verdict, refined ``mask`` and ``regions``, ``mask_source`` the refiner ("raw"
    where a region was kept)."""

    name: str

    def refine_result(self, image: np.ndarray, result: InspectionResult) -> InspectionResult: ...
