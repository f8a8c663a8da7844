"""Measure refiners against ground truth: pixel F1, IoU and AUPRO of raw vs refined masks,
each method refining the same raw NG results (as on the line). For AUPRO a method's score map
is ``0.5 * anomaly_map + 0.5 * mask``: mask pixels above all others, the map's order kept."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from inspection.core.images import DEFAULT_SOURCE_BITS, read_image, read_mask
from inspection.core.metrics import aupro
from inspection.core.types import InspectionResult
from inspection.refine.base import MaskRefiner
from inspection.refine.budget import budget_size, shrink_mask, shrink_result


class LabelledImage(Protocol):
    path: Path
    label: int
    defect_type: str
    mask_path: Path | None


class MapSource(Protocol):
    def inspect(self, image: np.ndarray) -> InspectionResult: ...


@dataclass
class _MethodRun:
    masks: list[np.ndarray]
    maps: list[np.ndarray]
    refine_ms: list[float]
    encoder_ms: list[float]
    sources: dict[str, int]


def read_gt(sample: LabelledImage, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool ground truth at the image's size (empty for good images)."""
    if sample.mask_path is None:
        return np.zeros(shape, dtype=bool)
    mask = read_mask(sample.mask_path)
    if mask.shape != shape:
        raise ValueError(f"{sample.mask_path}: mask {mask.shape} does not match image {shape}")
    return mask


def evaluate_refiners(
    inspector: MapSource,
    samples: Iterable[LabelledImage],
    refiners: Mapping[str, MaskRefiner],
    *,
    latency_only: Iterable[str] = (),
    on_image: Callable[[], None] | None = None,
    with_aupro: bool = True,
    max_side: int | None = None,
    bits: int = DEFAULT_SOURCE_BITS,
    value_range: tuple[float, float] | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Compare the raw mask with each refiner on labelled samples; a JSON-ready dict.
    ``latency_only``: refiners whose masks mean nothing (random SAM weights); ``max_side``:
    larger images are judged at full size, then refined and scored resized; ``bits``,
    ``value_range``: how the product's files read (``core.images.decode_reduced``);
    ``workers``: threads refining (1: one refinement at a time, the caller waiting); with
    more, each image's refinements run while the next images are judged, at most ``workers``
    images in flight. A refiner's mask of an image depends only on that image and its raw
    result, so the masks and every quality figure are the same for any ``workers``; the
    latencies are then each refinement's beside the others. The refiners must be thread-safe,
    as the classical ones are (GrabCut seeds OpenCV's per-thread generator before each call)."""
    latency_only = set(latency_only)
    runs = {name: _MethodRun([], [], [], [], {}) for name in ("raw", *refiners)}
    gts, labels, types, ng = [], [], [], []
    in_flight: deque[list[Future[tuple[InspectionResult, float | None]]]] = deque()

    def record_oldest() -> None:
        for name, refinement in zip(refiners, in_flight.popleft(), strict=True):
            _record(runs[name], *refinement.result())
        if on_image is not None:
            on_image()

    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="refine") as pool:
        for sample in samples:
            image, raw, gt = _judged(inspector, sample, max_side, bits, value_range)
            gts.append(gt)
            labels.append(int(sample.label))
            types.append(sample.defect_type)
            ng.append(raw.is_defective)
            _record(runs["raw"], raw, None)
            refine = partial(_refined, image=image, raw=raw)
            in_flight.append([pool.submit(refine, refiner) for refiner in refiners.values()])
            if len(in_flight) >= workers:
                record_oldest()
        while in_flight:
            record_oldest()
    labels_arr, ng_arr = np.asarray(labels), np.asarray(ng)
    methods = {}
    for name, run in runs.items():
        entry: dict[str, Any] = {"latency": _latency(run), "mask_sources": run.sources}
        if name in latency_only:
            entry["quality"] = None
            entry["note"] = "random weights: latency only, masks are meaningless"
        else:
            entry["quality"] = _quality(run, gts, labels_arr, types, with_aupro)
        methods[name] = entry
    return {
        "images": len(labels),
        "defective_images": int((labels_arr == 1).sum()),
        "ng_images": int(ng_arr.sum()),
        "defective_images_judged_ng": int((ng_arr & (labels_arr == 1)).sum()),
        "good_images_judged_ng": int((ng_arr & (labels_arr == 0)).sum()),
        "methods": methods,
        "score_map_for_aupro": "0.5 * anomaly_map + 0.5 * mask",
        "max_side": max_side,
    }


def _judged(
    inspector: MapSource,
    sample: LabelledImage,
    max_side: int | None,
    bits: int,
    value_range: tuple[float, float] | None,
) -> tuple[np.ndarray, InspectionResult, np.ndarray]:
    """(image, raw result, (H, W) bool truth) of one sample: judged at full size, then shrunk
    to ``max_side`` (``refine.budget``)."""
    image = read_image(sample.path, bits=bits, value_range=value_range)
    raw = inspector.inspect(image)
    gt = read_gt(sample, image.shape[:2])
    size = budget_size(image.shape, max_side)
    image, raw = shrink_result(image, raw, size)
    return image, raw, shrink_mask(gt, size)


def _refined(
    refiner: MaskRefiner, *, image: np.ndarray, raw: InspectionResult
) -> tuple[InspectionResult, float | None]:
    """(``refiner``'s result on an NG ``raw``, its ms); an OK ``raw`` comes back with None."""
    if not raw.is_defective:
        return raw, None
    start = time.perf_counter()
    refined = refiner.refine_result(image, raw)
    return refined, (time.perf_counter() - start) * 1e3


def _record(run: _MethodRun, result: InspectionResult, elapsed_ms: float | None) -> None:
    run.masks.append(result.mask)
    run.maps.append(0.5 * result.anomaly_map + 0.5 * result.mask.astype(np.float32))
    if elapsed_ms is not None:
        run.refine_ms.append(elapsed_ms)
        encoder = result.timings_ms.get("refine_encoder_ms")
        if encoder is not None:
            run.encoder_ms.append(float(encoder))
        run.sources[result.mask_source] = run.sources.get(result.mask_source, 0) + 1


def pixel_scores(pred: list[np.ndarray], gt: list[np.ndarray]) -> dict[str, float | None]:
    """Pooled pixel precision, recall, F1 and IoU over all given images."""
    tp = sum(int((p & g).sum()) for p, g in zip(pred, gt, strict=True))
    fp = sum(int((p & ~g).sum()) for p, g in zip(pred, gt, strict=True))
    fn = sum(int((~p & g).sum()) for p, g in zip(pred, gt, strict=True))
    if tp + fp + fn == 0:
        return {"precision": None, "recall": None, "f1": None, "iou": None}
    return {
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "f1": 2 * tp / (2 * tp + fp + fn),
        "iou": tp / (tp + fp + fn),
    }


def _quality(
    run: _MethodRun,
    gts: list[np.ndarray],
    labels: np.ndarray,
    types: list[str],
    with_aupro: bool = True,
) -> dict[str, Any]:
    defective = [i for i, label in enumerate(labels) if label == 1]
    per_image_iou = [
        float((run.masks[i] & gts[i]).sum() / max((run.masks[i] | gts[i]).sum(), 1))
        for i in defective
    ]

    def scores(rows: list[int]) -> dict[str, float | None]:
        return pixel_scores([run.masks[i] for i in rows], [gts[i] for i in rows])

    kinds = sorted({types[i] for i in defective})
    per_defect = {kind: scores([i for i in defective if types[i] == kind]) for kind in kinds}
    return {
        "defective_images": scores(defective),
        "all_images": pixel_scores(run.masks, gts),
        "mean_image_iou": float(np.mean(per_image_iou)) if per_image_iou else None,
        "aupro": _aupro(run.maps, gts) if with_aupro else None,
        "per_defect": per_defect,
    }


def _aupro(maps: list[np.ndarray], gts: list[np.ndarray]) -> float | None:
    """AUPRO of the maps; None when their shapes differ or no image has a defect pixel."""
    if not maps or len({m.shape for m in maps}) != 1 or not any(g.any() for g in gts):
        return None
    return aupro(np.stack(maps), np.stack(gts))


def _latency(run: _MethodRun) -> dict[str, Any]:
    values = np.asarray(run.refine_ms, dtype=np.float64)
    out: dict[str, Any] = {"ng_images": len(values)}
    if len(values):
        p50, p95 = np.percentile(values, [50, 95])
        out.update(mean_ms=float(values.mean()), p50_ms=float(p50), p95_ms=float(p95))
    if run.encoder_ms:
        out["encoder_mean_ms"] = float(np.mean(run.encoder_ms))
    return out
