"""Choose a bundle's mask refiner by measurement on labelled validation images (torch-free):
the best candidate by pooled pixel F1 on the defective NG images wins only if it beats the raw
mask by ``min_gain`` and keeps its mean image IoU (``core.refinement.choose_method``)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from inspection.core.images import DEFAULT_SOURCE_BITS
from inspection.core.refinement import DEFAULT_MIN_GAIN, RefinementChoice, choose_method
from inspection.refine.config import RefineConfig
from inspection.refine.evaluate import LabelledImage, MapSource, evaluate_refiners
from inspection.refine.factory import build_refiner

CANDIDATES: tuple[str, ...] = ("grabcut", "random_walker")
CHOICE_MAX_SIDE = 512
"""Longer side the choice measures at (``refine.budget``): its cost grows steeply with it."""


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
    value_range: tuple[float, float] | None = None,
) -> tuple[RefinementChoice, dict[str, Any]]:
    """(the choice, the ``evaluate_refiners`` result it was made from), on the defective
    samples with a mask (none: "none", nothing shows refinement helps), read at ``bits`` and
    ``value_range`` (``core.images.decode_reduced``). The candidates refine on a thread per
    CPU while the next images are judged (``evaluate_refiners``' ``workers``): the same masks
    and figures as one refinement after the other."""
    defective = [s for s in samples if s.label == 1 and s.mask_path is not None]
    config = config or RefineConfig()
    if not defective:
        return RefinementChoice("none", split=split, min_gain=min_gain, max_side=max_side), {}
    refiners = {name: build_refiner(config, name) for name in candidates}
    results = evaluate_refiners(
        inspector, defective, refiners, with_aupro=False, max_side=max_side, bits=bits,
        value_range=value_range, workers=os.cpu_count() or 1,
    )  # fmt: skip
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
