"""How a product's images are registered to its reference image: the spec (product config and
bundle metadata; the reference is a checksummed bundle file). The algorithm: ``runtime.alignment``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MotionKind = Literal["translation", "euclidean", "affine"]


@dataclass(frozen=True)
class AlignmentSpec:
    """ECC registration (``cv2.findTransformECCWithMask``) to the reference image ``file``, at a
    long side of ``working_size``; refused below ``min_correlation`` or beyond ``max_shift``
    (of the long side) or ``max_rotation`` (degrees). Only the ROI grown by ``mask_margin`` of
    the long side counts (the part's edges, not the fixture clutter)."""

    motion: MotionKind = "euclidean"
    working_size: int = 512
    min_correlation: float = 0.8
    max_shift: float = 0.05
    max_rotation: float = 5.0
    mask_margin: float = 0.05
    file: str = "reference.png"

    def __post_init__(self) -> None:
        if not 64 <= self.working_size <= 4096:
            raise ValueError(f"working_size must be in [64, 4096] pixels, got {self.working_size}")
        if not 0.0 < self.min_correlation < 1.0:
            raise ValueError(f"min_correlation must be in (0, 1), got {self.min_correlation}")
        if not 0.0 < self.max_shift <= 0.5:
            raise ValueError(f"max_shift must be in (0, 0.5], got {self.max_shift}")
        if not 0.0 <= self.max_rotation <= 45.0:
            raise ValueError(f"max_rotation must be in [0, 45] degrees, got {self.max_rotation}")
        if not 0.0 <= self.mask_margin <= 0.5:
            raise ValueError(f"mask_margin must be in [0, 0.5], got {self.mask_margin}")
