"""Masks of the bounded camera path vs today's full-resolution refinement (``bench/camera.py masks``).

Per demo product, the held-out defective test images are upscaled (bicubic) to a camera-sized
``--side`` and inspected twice with the product's live bundle:

- **full**: judged and refined at full resolution (working size >= the image, unlimited
  GrabCut crops): the station's behaviour before ``runtime.camera``;
- **bounded**: the station's defaults (working copy of longer side 1024, crops of at most
  65 536 px), the mask brought back to full resolution (nearest) for scoring.

Both are scored against the ground truth upscaled the same way (pooled pixel F1 over the
product's defective images), and against each other (agreement F1). Products whose bundle
refines nothing are also run with GrabCut forced on, as an evaluation family the bounded
defaults were not chosen on.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspection.core.images import read_image, read_mask
from inspection.refine.classical import ClassicalRefiner
from inspection.refine.config import load_refine_config
from inspection.runtime.camera import CameraOptions
from inspection.runtime.inspector import Inspector

UNBOUNDED_CROP = 1 << 40


def defect_images(dataset: Path, limit: int) -> list[tuple[Path, Path]]:
    """(image, ground-truth mask) of the test split's defective images, spread over types."""
    pairs = []
    for kind in sorted(p for p in (dataset / "test").iterdir() if p.name != "good"):
        for image in sorted(kind.glob("*.png")):
            pairs.append((image, dataset / "ground_truth" / kind.name / f"{image.stem}_mask.png"))
    step = max(1, len(pairs) // limit) if limit else 1
    return pairs[::step][: limit or None]


def _inspector(bundle: Path, method: str | None, bounded: bool) -> Inspector:
    config = load_refine_config()
    if not bounded:
        classical = dataclasses.replace(config.classical, max_crop_pixels=UNBOUNDED_CROP)
        config = dataclasses.replace(config, classical=classical)
    camera = CameraOptions() if bounded else CameraOptions(work_max_side=1 << 15)
    if method is None:  # the bundle's own choice
        inspector = Inspector.from_bundle(bundle, refiner="bundle", camera=camera, refine=config)
        chosen = inspector.metadata.refinement
        method = chosen.method if chosen is not None else "none"
        if method == "none":
            return inspector
    refiner = ClassicalRefiner(method, config)
    return Inspector.from_bundle(bundle, refiner=refiner, camera=camera)


def compare(bundle: Path, dataset: Path, side: int, limit: int, method: str | None) -> dict:
    """Pooled pixel F1 of both paths and their agreement, with per-image wall times."""
    full, bounded = _inspector(bundle, method, False), _inspector(bundle, method, True)
    counts = {"full": np.zeros(3), "bounded": np.zeros(3), "agree": np.zeros(3)}
    times: dict[str, list[float]] = {"full": [], "bounded": []}
    sources: set[str] = set()
    for image_path, mask_path in defect_images(dataset, limit):
        image = cv2.resize(read_image(image_path), (side, side), interpolation=cv2.INTER_CUBIC)
        truth = read_mask(mask_path if mask_path.is_file() else None, (side, side))
        masks = {}
        for name, inspector in (("full", full), ("bounded", bounded)):
            begin = time.perf_counter()
            result = inspector.inspect(image)
            times[name].append((time.perf_counter() - begin) * 1e3)
            sources.add(f"{name}:{result.mask_source}")
            mask = result.mask
            if mask.shape != truth.shape:
                mask = cv2.resize(
                    mask.astype(np.uint8), (side, side), interpolation=cv2.INTER_NEAREST
                ).astype(bool)
            masks[name] = mask
            counts[name] += _tp_fp_fn(mask, truth)
        counts["agree"] += _tp_fp_fn(masks["bounded"], masks["full"])
    f1 = {name: _f1(c) for name, c in counts.items()}
    return {
        "refiner": method or "bundle's choice",
        "images": len(times["full"]),
        "side": side,
        "pixel_f1_full": f1["full"],
        "pixel_f1_bounded": f1["bounded"],
        "f1_delta": f1["bounded"] - f1["full"],
        "agreement_f1": f1["agree"],
        "ms_full_p50": float(np.median(times["full"])),
        "ms_bounded_p50": float(np.median(times["bounded"])),
        "mask_sources": sorted(sources),
    }


def _tp_fp_fn(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    tp = int((predicted & truth).sum())
    return np.array([tp, int(predicted.sum()) - tp, int(truth.sum()) - tp], dtype=np.float64)


def _f1(counts: np.ndarray) -> float:
    tp, fp, fn = counts
    return float(2 * tp / max(2 * tp + fp + fn, 1))


def run(products: dict[str, tuple[Path, Path]], side: int, limit: int) -> list[dict[str, Any]]:
    """Rows for every product (its bundle's refiner) plus GrabCut forced where it has none."""
    rows = []
    for product, (bundle, dataset) in products.items():
        row = compare(bundle, dataset, side, limit, None)
        rows.append({"product": product, **row})
        chosen = Inspector.from_bundle(bundle).metadata.refinement
        if chosen is None or chosen.method == "none":
            forced = compare(bundle, dataset, side, limit, "grabcut")
            rows.append({"product": product, **forced, "evaluation_family": True})
    return rows
