"""INT8 accuracy control against the export gate's own figures, on the validation split.

NNCF (``quantize_with_accuracy_control``) reverts the INT8 layers that change the model's
outputs most, one group at a time, until a candidate's metric is within ``max_drop`` of
FP32's. The metric here is the gate's: the candidate is calibrated on its own outputs as the
export calibrates a bundle (``calibrate_bundle``: its operating point, its carried
out-of-fold scores) and judged on the validation split; each gated figure's shortfall against
FP32's is taken as a share of its gate tolerance, and the metric is 1 minus the largest share
(FP32: 1; NNCF divides by it). The held-out test split, which the gate itself judges, is never seen. A bundle with
an alignment or a global context is quantised without it (its outputs need the station's part
set-up; ``usable``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Protocol

import numpy as np
import openvino as ov

from inspection.core.bundle import BundleMetadata
from inspection.core.export_gate import RISING, BundleFigures, GateTolerances
from inspection.core.images import read_image
from inspection.core.model_record import GoodScores
from inspection.core.operating_point import OperatingPoint
from inspection.core.outputs import RawOutputs
from inspection.core.roi import apply_roi_batch
from inspection.runtime.preprocess import preprocess
from inspection.training.bundle_calibration import calibrate_bundle


class LabelledSample(Protocol):
    """A labelled image (``training.export.LabelledSample``)."""

    path: Path
    label: int
    defect_type: str
    mask_path: Path | None


class ExportSplits(Protocol):
    """What accuracy control reads of ``training.export.ExportSplits``."""

    validation: tuple[LabelledSample, ...]
    operating_point: OperatingPoint
    good_scores: GoodScores
    dataset_root: Path


SHARE_OF_TOLERANCE = 0.5
"""How much of each gate tolerance a candidate may use on the validation split: the gate
judges other images (the test split), so half is left for the difference between them."""
NO_REGION_SHARE = 10.0
"""The share counted for an NG verdict without a region (the gate refuses any)."""

Metric = Callable[[ov.CompiledModel, Iterable[int]], tuple[float, list[list[np.ndarray]]]]
"""NNCF's validation function over indices of the validation samples: the metric (higher is
better) and each sample's outputs (NNCF ranks layers by how much they change them)."""


def usable(meta: BundleMetadata) -> bool:
    """Whether the candidate's outputs can be judged here as the station judges them."""
    return meta.alignment is None and meta.global_context is None


def shortfall(ours: BundleFigures, fp32: BundleFigures, tolerances: GateTolerances) -> float:
    """The largest gated figure's shortfall against FP32 as a share of its tolerance (0: none
    worse; a tolerance of 0 makes any shortfall count as ``NO_REGION_SHARE``)."""
    worst = NO_REGION_SHARE if ours.ng_without_region else 0.0
    for item in fields(tolerances):
        mine, theirs = getattr(ours, item.name), getattr(fp32, item.name)
        if mine is None or theirs is None:
            continue
        worse = (mine - theirs) if item.name in RISING else (theirs - mine)
        if worse > 1e-9:
            tolerance = getattr(tolerances, item.name)
            worst = max(worst, worse / tolerance if tolerance else NO_REGION_SHARE)
    return worst


@dataclass
class GateMetric:
    """The gate's figures of a compiled candidate on ``validation`` (see the module doc)."""

    meta: BundleMetadata
    splits: ExportSplits
    tolerances: GateTolerances
    make_sample: Callable[[Path], LabelledSample]
    """A good sample of a training image (the score pairs ``calibrate_bundle`` fits)."""
    reference: BundleFigures | None = None
    _inputs: dict[Path, np.ndarray] | None = None

    def tensor(self, path: Path) -> np.ndarray:
        """The (3, h, w) model input of ``path`` (read and preprocessed once)."""
        self._inputs = {} if self._inputs is None else self._inputs
        if path not in self._inputs:
            prep = self.meta.preprocessing
            self._inputs[path] = preprocess(read_image(path, bits=prep.source_bits), prep)
        return self._inputs[path]

    def figures(
        self, compiled: ov.CompiledModel, chosen: Sequence[int]
    ) -> tuple[BundleFigures, list[list[np.ndarray]]]:
        """The candidate's gate figures on the ``chosen`` validation samples, calibrated on
        them, and each one's (score, map) outputs."""
        names = self.meta.output_names
        score_port, map_port = compiled.output(names.score), compiled.output(names.map)
        per_item: list[list[np.ndarray]] = []

        def run(samples: Sequence[LabelledSample]) -> RawOutputs:
            scores, maps = [], []
            for sample in samples:
                out = compiled(self.tensor(sample.path)[None])
                scores.append(float(np.ravel(out[score_port])[0]))
                maps.append(np.asarray(out[map_port], np.float32).reshape(out[map_port].shape[-2:]))
            raw_scores, raw_maps = apply_roi_batch(
                np.asarray(scores), np.stack(maps), self.meta.roi
            )
            return RawOutputs.of_samples(samples, raw_scores, raw_maps)

        samples = [self.splits.validation[i] for i in chosen]
        own = run(samples)
        per_item.extend([np.asarray([s]), m] for s, m in zip(own.scores, own.maps, strict=True))
        splits = self.splits
        calibration = calibrate_bundle(
            lambda batch: own if list(batch) == samples else run(batch), samples,
            splits.operating_point, splits.good_scores, splits.dataset_root,
            roi=self.meta.roi is not None, make_sample=self.make_sample,
        )  # fmt: skip
        return own.measure(calibration)[1], per_item

    def __call__(
        self, compiled: ov.CompiledModel, items: Iterable[int]
    ) -> tuple[float, list[list[np.ndarray]]]:
        """NNCF's validation function (``Metric``)."""
        figures, outputs = self.figures(compiled, list(items))
        if self.reference is None:
            raise RuntimeError("GateMetric.reference is unset: measure the FP32 model first")
        return 1.0 - shortfall(figures, self.reference, self.tolerances), outputs
