"""Physical units: pixel size of a product's camera, region sizes in millimetres."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass

from inspection.core.types import DefectRegion


@dataclass(frozen=True)
class PhysicalUnits:
    """Pixel pitch ``mm_per_pixel`` at ``reference_width`` (another width scales it); regions
    below ``min_defect_area_mm2`` make no NG."""

    mm_per_pixel: float
    reference_width: int
    min_defect_area_mm2: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mm_per_pixel) and self.mm_per_pixel > 0):
            raise ValueError(f"mm_per_pixel must be a positive number, got {self.mm_per_pixel}")
        if self.reference_width < 1:
            raise ValueError(f"reference_width must be >= 1 pixel, got {self.reference_width}")
        minimum = self.min_defect_area_mm2
        if minimum is not None and not (math.isfinite(minimum) and minimum >= 0):
            raise ValueError(f"min_defect_area_mm2 must be >= 0 (or null), got {minimum}")

    def pitch(self, image_width: int) -> float:
        """mm per pixel of an image ``image_width`` pixels wide (same field of view)."""
        return self.mm_per_pixel * self.reference_width / image_width

    def min_area_px(self, image_width: int) -> float | None:
        """``min_defect_area_mm2`` in pixels of an image ``image_width`` wide (None: no minimum)."""
        if self.min_defect_area_mm2 is None:
            return None
        return self.min_defect_area_mm2 / self.pitch(image_width) ** 2


def with_sizes(
    regions: Iterable[DefectRegion], units: PhysicalUnits | None, image_width: int
) -> tuple[DefectRegion, ...]:
    """``regions`` with ``area_mm2`` and ``length_mm`` filled in (unchanged without units)."""
    regions = tuple(regions)
    if units is None:
        return regions
    pitch = units.pitch(image_width)
    return tuple(
        dataclasses.replace(
            r,
            area_mm2=r.area * pitch**2,
            length_mm=(
                r.length
                if r.length is not None
                else math.hypot(r.box[2] - r.box[0], r.box[3] - r.box[1])
            )
            * pitch,
            width_mm=None if r.width is None else r.width * pitch,
        )
        for r in regions
    )
