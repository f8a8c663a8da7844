"""The line-station predictor: an OpenVINO bundle in, ``InspectionResult`` out. Never imports torch.

``inspect`` judges one image (thread-safe, lowest latency), ``inspect_batch`` one batched
inference, ``inspect_many`` keeps requests in flight for throughput; all end in ``judge_raw``.
Raw inference is ``inspector.model`` (``runtime.model.BundleModel``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inspection.core.bundle import BundleMetadata
from inspection.core.errors import InputDomainError
from inspection.core.golden import GoldenCheck, Recalibration
from inspection.core.input_domain import InputCheck, input_check_mode
from inspection.core.roi import clear_outside
from inspection.core.threshold import check_threshold
from inspection.core.types import AffineMatrix, InspectionResult
from inspection.core.units import with_sizes
from inspection.core.verdict import judge
from inspection.refine.base import MaskRefiner
from inspection.runtime.bounds import CameraOptions, RefineGate, bounded_image
from inspection.runtime.loader import load_bundle
from inspection.runtime.model import BundleModel, Finished
from inspection.runtime.preprocess import (
    check_image,
    model_batch,
    model_input,
    normalize_map,
    normalize_score,
    resize_map,
)
from inspection.runtime.warmup import WarmOutcome

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawImageOutputs:
    """One image's raw model outputs, ready to judge (``Inspector.judge_raw``): the aligned
    image as inferred, raw score and (h, w) map, the ``perf_counter`` origin of the latency,
    the global context's components and the ``Prepared`` alignment and warnings."""

    image: np.ndarray
    score: float
    anomaly_map: np.ndarray
    start: float
    timings_ms: dict[str, float] = field(default_factory=dict)
    components: dict[str, float] = field(default_factory=dict)
    alignment: AffineMatrix | None = None
    input_warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Prepared:
    """An image admitted and made ready for the model (``Inspector.prepare``): ``image`` (H, W,
    3) uint8 RGB in the bundle's colour, aligned; ``alignment`` its matrix (None: unaligned);
    ``input_warnings`` the input-domain problems judged anyway (``input_check="warn"``)."""

    image: np.ndarray
    alignment: AffineMatrix | None = None
    input_warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Submitted:
    """One ``inspect_many`` request waiting for OpenVINO: its start, prepared image and input."""

    start: float
    prepared: Prepared
    tensor: np.ndarray


class Inspector:
    """Judges images with one verified bundle. Build with ``Inspector.from_bundle``."""

    def __init__(
        self,
        model: BundleModel,
        *,
        refiner: MaskRefiner | None = None,
        threshold: float | None = None,
        camera: CameraOptions | None = None,
        input_check: InputCheck = "refuse",
    ) -> None:
        """``camera`` bounds the per-image stages; ``input_check``: refuse, warn on or ignore
        an image outside the bundle's input domain (``core.input_domain``)."""
        self.model = model
        self.refiner = refiner
        self.camera = camera or CameraOptions()
        self.input_check: InputCheck = input_check_mode(input_check)
        if model.metadata.input_domain is None:
            log.warning(
                "%s records no input domain (exported before it was recorded): images are not "
                "checked against its training images' colour and size; re-export it to check them",
                self.model_version,
            )
        self._refine_gate = RefineGate()
        self.golden: GoldenCheck | None = None
        """The golden check run at load (``runtime.golden``); None: not run or no golden."""
        self.recalibration: Recalibration | None = None
        """How a drifting bundle was re-calibrated at load (None: it was not)."""
        self._threshold = check_threshold(
            model.metadata.image_threshold if threshold is None else threshold
        )

    @classmethod
    def from_bundle(
        cls,
        path: str | Path,
        *,
        threshold: float | None = None,
        camera: CameraOptions | None = None,
        input_check: InputCheck = "refuse",
        **options: Any,
    ) -> Inspector:
        """The bundle loaded by ``runtime.loader.load_bundle`` (``options`` are its keywords)."""
        loaded = load_bundle(path, **options)
        inspector = cls(
            loaded.model,
            refiner=loaded.refiner,
            threshold=threshold,
            camera=camera,
            input_check=input_check,
        )
        inspector.golden = loaded.golden
        inspector.recalibration = loaded.recalibration
        return inspector

    # ---------------------------------------------------------------- properties
    @property
    def metadata(self) -> BundleMetadata:
        return self.model.metadata

    @property
    def bundle_dir(self) -> Path:
        return self.model.bundle_dir

    @property
    def threshold(self) -> float:
        """Default image threshold (the bundle's, or the one given at load); NG at or above."""
        return self._threshold

    @property
    def model_version(self) -> str:
        """``<product>/<bundle id>``, e.g. ``brick/v0003-int8``."""
        return f"{self.metadata.product}/{self.metadata.bundle_id}"

    def warm(self, idle_ms: float) -> WarmOutcome:
        """On the line's trigger, before the image: ``BundleModel.warm``."""
        return self.model.warm(idle_ms)

    @property
    def warm_run_ms(self) -> float | None:
        """Running mean of this bundle's warm runs (they start cold; None: none timed)."""
        return self.model.warm_stats.run_ms

    # ----------------------------------------------------------------- admitting
    def admit(self, image: np.ndarray) -> tuple[str, ...]:
        """Hold ``image`` against the bundle's input domain under ``input_check``: raises
        ``InputDomainError`` when refusing, else returns the problems (logged)."""
        domain = self.metadata.input_domain
        if domain is None or self.input_check == "off":
            return ()
        meta = self.metadata
        input_size, tiled = meta.preprocessing.input_size, meta.tiling is not None
        problems = domain.problems(
            image,
            input_size=input_size,
            tiled=tiled,
            # what ``runtime.bounds.Reading`` reduces a larger camera image to
            work_side=None if tiled else self.camera.work_side(input_size),
        )
        if problems and self.input_check == "refuse":
            raise InputDomainError("; ".join(problems))
        for problem in problems:
            log.warning("%s: judged anyway (input_check: warn): %s", self.model_version, problem)
        return problems

    def prepare(self, image: np.ndarray) -> Prepared:
        """``image`` checked once, admitted, then in the training colour and aligned: where
        every inspection path (``inspect*``, ``runtime.tiled``) starts."""
        warnings = self.admit(check_image(image))
        aligned, alignment = self.model.align_checked(image)
        return Prepared(aligned, alignment, warnings)

    # ---------------------------------------------------------------- inspecting
    def inspect(
        self, image: np.ndarray, *, threshold: float | None = None, started: float | None = None
    ) -> InspectionResult:
        """Judge one (H, W, 3) uint8 RGB image. ``started``: the ``perf_counter`` time the
        caller began (decoding); latency and budget count from it."""
        threshold = self._threshold if threshold is None else check_threshold(threshold)
        return self.judge_raw(self.infer_raw(image, started=started), threshold=threshold)

    def infer_raw(self, image: np.ndarray, *, started: float | None = None) -> RawImageOutputs:
        """One image's raw outputs, before ``judge_raw`` (``started`` as in ``inspect``)."""
        start = time.perf_counter()
        ready = self.prepare(image)
        tensor = model_input(ready.image, self.metadata.preprocessing)
        prepared = time.perf_counter()
        raw = self.model.infer(tensor[None])
        inferred = time.perf_counter()
        timings = {"preprocess": (prepared - start) * 1e3, "infer": (inferred - prepared) * 1e3}
        origin = start if started is None else started
        return RawImageOutputs(
            ready.image, float(raw.scores[0]), raw.maps[0], origin, timings, raw.components[0],
            ready.alignment, ready.input_warnings,
        )  # fmt: skip

    def inspect_batch(self, images: Sequence[np.ndarray]) -> list[InspectionResult]:
        """Judge several images with one batched inference; latency is the per-image share.
        One image refused (``InputDomainError``, ``AlignmentError``) refuses the batch."""
        if not images:
            return []
        start = time.perf_counter()
        ready = [self.prepare(image) for image in images]
        batch = model_batch([r.image for r in ready], self.metadata.preprocessing)
        prepared = time.perf_counter()
        raw = self.model.infer(batch)
        inferred = time.perf_counter()
        share = 1e3 / len(images)
        timings = {"preprocess": (prepared - start) * share, "infer": (inferred - prepared) * share}
        results = []
        for item, score, raw_map, parts in zip(
            ready, raw.scores, raw.maps, raw.components, strict=True
        ):
            outputs = RawImageOutputs(
                item.image, float(score), raw_map, time.perf_counter(), dict(timings), parts,
                item.alignment, item.input_warnings,
            )  # fmt: skip
            result = self.judge_raw(outputs)
            results.append(
                dataclasses.replace(
                    result, latency_ms=result.latency_ms + timings["preprocess"] + timings["infer"]
                )
            )
        return results

    def inspect_many(
        self, images: Iterable[np.ndarray], *, jobs: int = 0
    ) -> list[InspectionResult]:
        """Throughput mode: ``jobs`` requests in flight (0: OpenVINO's optimal number),
        results in input order, each latency from submission to completion. Finished
        requests are judged while the others run; a refused image stops the run."""
        queue, finished = self.model.async_queue(jobs)
        pending: dict[int, _Submitted] = {}
        results: dict[int, InspectionResult] = {}
        try:
            for index, image in enumerate(images):
                start = time.perf_counter()
                ready = self.prepare(image)
                tensor = model_input(ready.image, self.metadata.preprocessing)[None]
                pending[index] = _Submitted(start, ready, tensor)
                queue.start_async({0: tensor}, index, share_inputs=True)  # kept alive in pending
                for done in [i for i in list(finished) if i in pending]:
                    results[done] = self._finish_async(pending.pop(done), finished.pop(done))
        finally:
            queue.wait_all()  # never leave requests running on arrays about to be freed
        del queue
        for done in sorted(pending):
            results[done] = self._finish_async(pending[done], finished.pop(done))
        return [results[i] for i in range(len(results))]

    def _finish_async(self, submitted: _Submitted, done: Finished) -> InspectionResult:
        """The result of one ``inspect_many`` request."""
        raw = self.model.fuse(submitted.tensor, done.outputs)
        ready = submitted.prepared
        outputs = RawImageOutputs(
            ready.image, float(raw.scores[0]), raw.maps[0], time.perf_counter(),
            components=raw.components[0], alignment=ready.alignment,
            input_warnings=ready.input_warnings,
        )  # fmt: skip
        result = self.judge_raw(outputs)
        infer_ms = (done.finished - submitted.start) * 1e3
        result.timings_ms["infer"] = infer_ms
        return dataclasses.replace(result, latency_ms=result.latency_ms + infer_ms)

    # ------------------------------------------------------------ postprocessing
    def judge_raw(
        self, raw: RawImageOutputs, *, threshold: float | None = None
    ) -> InspectionResult:
        """Normalise, resize the map to the image, judge (``core.verdict``) and refine: where
        every ``inspect*`` method and ``runtime.tiled`` end."""
        threshold = self._threshold if threshold is None else check_threshold(threshold)
        post_start = time.perf_counter()
        meta = self.metadata
        timings = dict(raw.timings_ms)
        input_size = meta.preprocessing.input_size
        image, camera_size = bounded_image(raw.image, self.camera.work_side(input_size))
        score = normalize_score(raw.score, meta.normalization)
        height, width = image.shape[:2]
        anomaly_map = resize_map(normalize_map(raw.anomaly_map, meta.normalization), height, width)
        anomaly_map = clear_outside(anomaly_map, meta.roi)
        regions_start = time.perf_counter()
        min_area = None if meta.units is None else meta.units.min_area_px(width)
        judged = judge(score, threshold, anomaly_map, meta.segmentation_rule, min_area=min_area)
        timings["regions"] = (time.perf_counter() - regions_start) * 1e3
        result = InspectionResult(
            score=score,
            threshold=threshold,
            verdict=judged.verdict,
            anomaly_map=anomaly_map,
            mask=judged.mask,
            regions=with_sizes(judged.regions, meta.units, width),
            candidates=with_sizes(judged.candidates, meta.units, width),
            min_defect_area=min_area,
            latency_ms=0.0,
            model_version=self.model_version,
            timings_ms=timings,
            components=dict(raw.components),
            alignment=raw.alignment,
            camera_size=camera_size,
            input_warnings=raw.input_warnings,
        )
        timings["postprocess"] = (time.perf_counter() - post_start) * 1e3 - timings["regions"]
        if self.refiner is not None and result.is_defective:
            result = self._refine_gate.refine(
                self.refiner, image, result, started=raw.start,
                budget_ms=self.camera.latency_budget_ms,
            )  # fmt: skip
        return dataclasses.replace(
            result,
            latency_ms=(time.perf_counter() - raw.start) * 1e3,
            timings_ms={**result.timings_ms, **timings},
        )


__all__ = ["Inspector", "Prepared", "RawImageOutputs"]
