"""Choose a bundle's mask refiner by measurement on labelled validation images (torch-free).

The raw judged mask and each candidate are scored on the defective images (pooled pixel F1,
NG results only); the best wins only if it beats raw by ``min_gain`` and keeps its mean image
IoU. Images over ``max_side`` are measured resized (``refine.budget``); the station still
refines at full resolution.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from inspection.core.images import DEFAULT_SOURCE_BITS
from inspection.core.refinement import DEFAULT_MIN_GAIN, RefinementChoice, choose_method
from inspection.refine.config import RefineConfig
from inspection.refine.evaluate import LabelledImage, MapSource, evaluate_refiners
from inspection.refine.factory import build_refiner

CANDIDATES: tuple[str, ...] = ("grabcut", "random_walker")
"""The export's default choice. ``guided`` (``refine.guided``) is opt-in: it shrinks regions
without image edges below the overlap that counts them as found, and a refiner must not lose
found defects (``docs/masks.md``)."""
CHOICE_MAX_SIDE = 512
"""Pixel budget of the choice: its cost grows steeply with the image side (``reports/hires``);
smaller images are compared as they are."""


def choose_refiner(
    inspector: MapSource,
    samples: Iterable[LabelledImage],
    *,
    config: RefineConfig | None = None,
    candidates: Sequence[str] = CANDIDATES,
    min_gain: float = DEFAULT_MIN_GAIN,
    split: str = "validation",
    max_side: int | None = CHOICE_MAX_SIDE,
    bits: int = DEFAULT_SOURCE_BITS,
) -> tuple[RefinementChoice, dict[str, Any]]:
    """(the choice, the full ``evaluate_refiners`` result it was made from).

    Only defective samples with a ground-truth mask are measured; with none, the choice is
    "none" (nothing shows that refinement helps). ``bits``: significant bits of 16-bit
    images (the bundle's ``preprocessing.source_bits``).
    """
    defective = [s for s in samples if s.label == 1 and s.mask_path is not None]
    config = config or RefineConfig()
    if not defective:
        return RefinementChoice("none", split=split, min_gain=min_gain, max_side=max_side), {}
    refiners = {name: build_refiner(config, name) for name in candidates}
    results = evaluate_refiners(
        inspector, defective, refiners, with_aupro=False, max_side=max_side, bits=bits
    )
    quality = {name: entry["quality"] for name, entry in results["methods"].items()}
    pixel_f1 = {name: q["defective_images"]["f1"] for name, q in quality.items()}
    measured = {name: round(float(f1), 4) for name, f1 in pixel_f1.items() if f1 is not None}
    iou = {name: round(float(q["mean_image_iou"]), 4) for name, q in quality.items()
           if q["mean_image_iou"] is not None}  # fmt: skip
    method = choose_method(measured, min_gain=min_gain, region_iou=iou)
    choice = RefinementChoice(
        method, split=split, images=len(defective), pixel_f1=measured, min_gain=min_gain,
        max_side=max_side, region_iou=iou,
    )  # fmt: skip
    return choice, results
