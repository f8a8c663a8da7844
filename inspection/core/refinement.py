"""Which mask refiner a bundle's station runs, and the validation measurement that chose it
(refinement helps some textures and hurts others, so each bundle chooses on its own)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

RefinerMethod = Literal["none", "grabcut", "random_walker"]
REFINER_METHODS: tuple[str, ...] = ("none", "grabcut", "random_walker")
DEFAULT_MIN_GAIN = 0.01
"""A refiner is chosen only if it beats the raw mask's validation pixel F1 by this much."""


@dataclass(frozen=True)
class RefinementChoice:
    """``method`` the station runs on NG results ("none": the judged mask as is), chosen on
    ``pixel_f1`` and mean image ``region_iou`` ({} in older choices) of each candidate and
    ``"raw"`` on ``images`` defective validation images resized to ``max_side`` (None: full)."""

    method: RefinerMethod
    split: str = "validation"
    images: int = 0
    pixel_f1: dict[str, float] = field(default_factory=dict)
    min_gain: float = DEFAULT_MIN_GAIN
    max_side: int | None = None
    region_iou: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in REFINER_METHODS:
            raise ValueError(
                f"refiner method must be one of {REFINER_METHODS}, got {self.method!r}"
            )
        if self.max_side is not None and self.max_side < 1:
            raise ValueError(f"max_side must be >= 1 (or None), got {self.max_side}")
        if self.images < 0 or self.min_gain < 0:
            raise ValueError(
                f"images and min_gain must be >= 0, got {self.images} and {self.min_gain}"
            )
        if self.method != "none" and not {"raw", self.method} <= set(self.pixel_f1):
            raise ValueError(
                f"refiner {self.method!r} chosen without its measurement: pixel_f1 needs 'raw' "
                f"and {self.method!r}, got {sorted(self.pixel_f1)}"
            )

    @property
    def gain(self) -> float | None:
        """Pixel F1 gain of the chosen refiner over the raw mask (None for "none")."""
        if self.method == "none":
            return None
        return self.pixel_f1[self.method] - self.pixel_f1["raw"]

    def describe(self) -> str:
        """One line for reports: what was chosen and why."""
        if not self.pixel_f1:
            return f"{self.method}: no labelled defects on the {self.split} split to measure"
        figures = ", ".join(f"{name} {f1:.3f}" for name, f1 in self.pixel_f1.items())
        if self.region_iou:
            figures += "; mean image IoU " + ", ".join(
                f"{name} {iou:.3f}" for name, iou in self.region_iou.items()
            )
        if self.method == "none":
            why = f"no refiner beat the raw mask by >= {self.min_gain:.3f} without losing IoU"
        else:
            why = f"+{self.gain:.3f} over raw (needs >= {self.min_gain:.3f})"
        where = f" (longer side <= {self.max_side} px)" if self.max_side else ""
        return (
            f"{self.method}: {why}; {self.split} pixel F1 on {self.images} defective "
            f"images{where}: {figures}"
        )


def choose_method(
    pixel_f1: dict[str, float | None],
    *,
    min_gain: float = DEFAULT_MIN_GAIN,
    region_iou: dict[str, float | None] | None = None,
) -> RefinerMethod:
    """The candidate with the highest pixel F1 if it beats ``pixel_f1["raw"]`` by ``min_gain``
    and does not lower the raw mask's ``region_iou`` (when given); None figures never win,
    and without a raw figure the answer is "none"."""
    raw = pixel_f1.get("raw")
    if raw is None:
        return "none"
    iou = region_iou or {}

    def keeps_iou(name: str) -> bool:
        if not iou:
            return True
        mine, base = iou.get(name), iou.get("raw")
        return mine is not None and (base is None or mine >= base)

    best, best_f1 = "none", raw + min_gain
    for name, f1 in pixel_f1.items():
        if name != "raw" and f1 is not None and f1 >= best_f1 and f1 > raw and keeps_iou(name):
            best, best_f1 = name, f1
    if best not in REFINER_METHODS:
        raise ValueError(f"unknown refiner {best!r}; valid: {', '.join(REFINER_METHODS)}")
    return best  # type: ignore[return-value]
