"""Score champion and challenger bundles on one evaluation set with the station ``Inspector``,
in alternating order (latency under the same load), each judged by its own threshold.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from inspection.core.errors import BundleError
from inspection.core.images import read_image, read_mask
from inspection.core.metrics import EvaluationMetrics, compute_metrics, judge_all
from inspection.retrain.assemble import EvalItem
from inspection.retrain.gate import GATEABLE_METRICS, LATENCY_KEY

if TYPE_CHECKING:
    from inspection.core.types import InspectionResult
    from inspection.runtime.inspector import RawImageOutputs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BundleEvaluation:
    """One bundle's scores (N,) in [0, 1], latencies (N,) ms and metrics on the evaluation set."""

    role: str
    bundle_id: str
    model_version: str
    threshold: float
    scores: np.ndarray
    latencies_ms: np.ndarray
    metrics: EvaluationMetrics

    def latency(self) -> dict[str, float]:
        return {
            LATENCY_KEY: float(np.percentile(self.latencies_ms, 50)),
            "latency_p95_ms": float(np.percentile(self.latencies_ms, 95)),
        }

    def gate_metrics(self) -> dict[str, float]:
        """Flat ``{name: value}`` the gate compares; undefined metrics are left out."""
        figures = self.metrics.overall.figures()
        flat = {k: figures[k] for k in GATEABLE_METRICS if k in figures}
        return {**flat, **self.latency()}


@dataclass
class _Outputs:
    """One bundle's per-item results: the station's score, its judged map and the raw
    (ranked: pixel AUROC and AUPRO) map, both at the evaluation size, and the latency."""

    scores: list[float] = field(default_factory=list)
    maps: list[np.ndarray] = field(default_factory=list)
    raw_maps: list[np.ndarray] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def add(self, raw: RawImageOutputs, result: InspectionResult, size: tuple[int, int]) -> None:
        self.scores.append(result.score)
        self.latencies.append(result.latency_ms)
        for kept, array in ((self.maps, result.anomaly_map), (self.raw_maps, raw.anomaly_map)):
            kept.append(cv2.resize(array, size, interpolation=cv2.INTER_AREA))


def evaluate_bundles(
    bundles: Mapping[str, Path],
    items: Sequence[EvalItem],
    *,
    warmup: int = 2,
    on_image: Callable[[int], None] | None = None,
) -> dict[str, BundleEvaluation]:
    """Run every bundle (role -> folder) on ``items``, pixel metrics at the first one's input
    size; every item is judged in or out of the input domain (a ``warn`` station stores both)."""
    # deferred: pulls OpenVINO (0.3 s), only when bundles are scored
    from inspection.runtime.predictor import load_inspector

    if not items:
        raise BundleError("the evaluation set is empty; nothing to compare the bundles on")
    inspectors = {role: load_inspector(path, input_check="off") for role, path in bundles.items()}
    roles = list(inspectors)
    height, width = inspectors[roles[0]].metadata.preprocessing.input_size
    reading = {r: (i.metadata.preprocessing.source_bits, i.metadata.preprocessing.source_range)
               for r, i in inspectors.items()}  # fmt: skip
    for role, inspector in inspectors.items():
        first = read_image(items[0].path, bits=reading[role][0], value_range=reading[role][1])
        for _ in range(warmup):
            inspector.inspect(first)
    outputs = {role: _Outputs() for role in roles}
    for index, item in enumerate(items):
        # Each bundle reads images as it was trained on them (``source_bits``, ``source_range``).
        images = {
            (bits, value_range): read_image(item.path, bits=bits, value_range=value_range)
            for bits, value_range in set(reading.values())
        }
        for role in roles if index % 2 == 0 else roles[::-1]:
            raw = inspectors[role].infer_raw(images[reading[role]])
            outputs[role].add(raw, inspectors[role].judge_raw(raw), (width, height))
        if on_image is not None:
            on_image(index)
    masks = np.stack([read_mask(item.mask_path, (height, width)) for item in items])
    known = np.array([item.has_pixel_truth for item in items], dtype=bool)
    evaluations = {}
    for role in roles:
        evaluations[role] = _evaluation(role, inspectors[role], outputs[role], masks, known, items)
    return evaluations


def _evaluation(
    role: str,
    inspector: Any,
    outputs: _Outputs,
    masks: np.ndarray,
    known: np.ndarray,
    items: Sequence[EvalItem],
) -> BundleEvaluation:
    score_array = np.asarray(outputs.scores, dtype=np.float32)
    map_array = np.stack(outputs.maps)
    segmentation = inspector.metadata.segmentation_rule
    judged = judge_all(score_array, map_array, inspector.threshold, segmentation)
    labels = np.asarray([item.label for item in items], dtype=np.int64)
    metrics = compute_metrics(
        score_array, labels, np.stack(outputs.raw_maps), masks, [item.defect_type for item in items], judged,
        image_threshold=inspector.threshold, segmentation=segmentation.describe(),
        mask_known=known,
    )  # fmt: skip
    meta = inspector.metadata
    return BundleEvaluation(role, meta.bundle_id, meta.model_version, inspector.threshold,
                            score_array, np.asarray(outputs.latencies, dtype=np.float64), metrics)  # fmt: skip
