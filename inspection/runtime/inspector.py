"""The line-station predictor: an OpenVINO bundle in, ``InspectionResult`` out. Never imports torch.

    inspector = Inspector.from_bundle("var/registry/brick/bundles/v0001-int8")
    result = inspector.inspect(read_image("part.png"))      # (H, W, 3) uint8 RGB

``inspect`` is for one image at a time (thread-safe, lowest latency); ``inspect_batch`` runs
one batched inference; ``inspect_many`` keeps several requests in flight on OpenVINO's
``AsyncInferQueue`` for throughput.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import openvino as ov

from inspection.core.bundle import BundleMetadata, verify_bundle
from inspection.core.errors import BundleError, ImageDecodeError
from inspection.core.global_context import GlobalContext, fuse, images_of_input
from inspection.core.images import IMAGE_SUFFIXES, DecodedImage, read_image, read_reduced
from inspection.core.roi import apply_roi, apply_roi_batch, clear_outside
from inspection.core.types import AffineMatrix, InspectionResult
from inspection.core.units import with_sizes
from inspection.core.verdict import check_threshold, judge
from inspection.refine.base import MaskRefiner
from inspection.runtime.alignment import Aligner
from inspection.runtime.camera import CameraOptions, RefineGate, bounded_image, with_camera_size
from inspection.runtime.graph import optimize_graph
from inspection.runtime.preprocess import (
    check_image,
    normalize_map,
    normalize_score,
    preprocess,
    resize_map,
)

log = logging.getLogger(__name__)

PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT")


@dataclass(frozen=True)
class PathOutcome:
    """One file of a batch: a result, or the reason it could not be inspected."""

    path: Path
    result: InspectionResult | None = None
    error: str | None = None
    image: np.ndarray | None = field(default=None, repr=False, compare=False)
    """The decoded (H, W, 3) uint8 RGB image (for overlays); ``None`` on error."""

    @property
    def ok(self) -> bool:
        return self.result is not None


@dataclass(frozen=True)
class RawImageOutputs:
    """One image's raw model outputs, ready to judge (``Inspector.judge_raw``).

    ``image``: the (H, W, 3) uint8 RGB image as inferred (aligned); ``score``: the raw image
    score; ``anomaly_map``: the (h, w) float32 raw map; ``start``: the ``perf_counter`` origin
    of the latency; ``timings_ms``: the stages so far; ``components``: the fused image-level
    components (global context), empty without one; ``alignment``: the matrix the image was
    aligned with (``Inspector.align_with_matrix``), None when not aligned.
    """

    image: np.ndarray
    score: float
    anomaly_map: np.ndarray
    start: float
    timings_ms: dict[str, float] = field(default_factory=dict)
    components: dict[str, float] = field(default_factory=dict)
    alignment: AffineMatrix | None = None


class Inspector:
    """Runs one verified bundle. Build with ``Inspector.from_bundle``."""

    def __init__(
        self,
        compiled: ov.CompiledModel,
        metadata: BundleMetadata,
        *,
        bundle_dir: Path,
        refiner: MaskRefiner | None = None,
        threshold: float | None = None,
        batched: Callable[[], ov.CompiledModel] | None = None,
        camera: CameraOptions | None = None,
    ) -> None:
        """``compiled`` serves batches of one; ``batched`` compiles (on first use) the model
        for other batch sizes when ``compiled`` has a static batch of one. ``camera`` bounds
        the per-image stages (``runtime.camera``; default: ``CameraOptions()``)."""
        self.metadata = metadata
        self.camera = camera or CameraOptions()
        self._refine_gate = RefineGate()
        self.bundle_dir = bundle_dir
        self.refiner = refiner
        self._compiled = compiled
        names = metadata.output_names
        try:
            self._score_port = compiled.output(names.score)
            self._map_port = compiled.output(names.map)
        except (KeyError, RuntimeError) as exc:
            raise BundleError(
                f"{bundle_dir}: model has no outputs named {names}; the bundle is inconsistent"
            ) from exc
        self._score_index = _output_index(compiled, names.score)
        self._map_index = _output_index(compiled, names.map)
        self._context, self._pooled_index = _global_context(compiled, metadata, bundle_dir)
        self._aligner = _aligner(metadata, bundle_dir)
        self._request = compiled.create_infer_request()
        self._compile_batched = batched
        self._batched: ov.CompiledModel | None = None
        self._batched_request: ov.InferRequest | None = None
        self._lock = threading.Lock()
        self._threshold = check_threshold(
            metadata.image_threshold if threshold is None else threshold
        )

    # ------------------------------------------------------------------ building
    @classmethod
    def from_bundle(
        cls,
        path: str | Path,
        *,
        device: str = "CPU",
        refiner: MaskRefiner | Literal["bundle"] | None = None,
        threshold: float | None = None,
        performance_hint: str = "LATENCY",
        num_threads: int | None = None,
        optimize: bool = True,
        camera: CameraOptions | None = None,
    ) -> Inspector:
        """Verify the bundle's checksums, then compile its IR on ``device``.

        ``optimize`` applies output-preserving graph rewrites first (``runtime.graph``: the
        anomaly-map head as two matmuls, the nearest-neighbour minimum before the square
        root) and compiles single images with a static batch of one (other batch sizes
        compile on first use). ``refiner="bundle"`` refines NG masks with
        the refiner the bundle's ``metadata.refinement`` chose (seeded from the station's
        ``configs/refine.yaml``); ``None``: no refinement.
        """
        bundle_dir = Path(path)
        if performance_hint not in PERFORMANCE_HINTS:
            raise ValueError(
                f"performance_hint must be one of {PERFORMANCE_HINTS}, got {performance_hint!r}"
            )
        metadata = verify_bundle(bundle_dir)
        core = ov.Core()
        if device not in core.available_devices and device != "AUTO":
            raise BundleError(
                f"OpenVINO device {device!r} is not available here; "
                f"available: {', '.join(core.available_devices)}"
            )
        config: dict[str, object] = {"PERFORMANCE_HINT": performance_hint}
        if metadata.inference_precision and device == "CPU":
            config["INFERENCE_PRECISION_HINT"] = metadata.inference_precision
        if num_threads:
            config["INFERENCE_NUM_THREADS"] = int(num_threads)
        try:
            model = core.read_model(bundle_dir / metadata.model_file)
            batched = None
            if optimize:
                optimize_graph(model)
                single = _batch_of_one(model)
                if single is not model:
                    batched = _deferred_compile(core, model, device, config)
                model = single
            compiled = core.compile_model(model, device, config)
        except RuntimeError as exc:
            raise BundleError(f"{bundle_dir}: OpenVINO cannot load the model: {exc}") from exc
        log.info("loaded bundle %s on %s (%s)", metadata.bundle_id, device, performance_hint)
        if refiner == "bundle":
            refiner = _bundle_refiner(metadata)
        return cls(
            compiled,
            metadata,
            bundle_dir=bundle_dir,
            refiner=refiner,
            threshold=threshold,
            batched=batched,
            camera=camera,
        )

    # ---------------------------------------------------------------- properties
    @property
    def threshold(self) -> float:
        """Default image threshold (the bundle's, or the one given at load); NG when
        score >= threshold. A caller with its own threshold passes it to ``inspect``."""
        return self._threshold

    @property
    def model_version(self) -> str:
        """``<product>/<bundle id>``, e.g. ``brick/v0003-int8``."""
        return f"{self.metadata.product}/{self.metadata.bundle_id}"

    @property
    def input_size(self) -> tuple[int, int]:
        return self.metadata.preprocessing.input_size

    @property
    def compiled_model(self) -> ov.CompiledModel:
        """The compiled OpenVINO model for any batch size (for callers that keep their own
        request queues)."""
        with self._lock:
            return self._compiled_for(2)

    def _compiled_for(self, count: int) -> ov.CompiledModel:
        """The compiled model serving batches of ``count`` (call with the lock held)."""
        if count == 1 or self._compile_batched is None:
            return self._compiled
        if self._batched is None:
            log.info("compiling %s for batches of more than one", self.metadata.bundle_id)
            self._batched = self._compile_batched()
        return self._batched

    def _run(self, batch: np.ndarray) -> ov.InferRequest:
        """Infer (N, 3, h, w) ``batch`` on the request for its size (call with the lock held)."""
        request = self._request
        if len(batch) != 1 and self._compile_batched is not None:
            if self._batched_request is None:
                self._batched_request = self._compiled_for(len(batch)).create_infer_request()
            request = self._batched_request
        # share_inputs: OpenVINO reads the array in place instead of copying it (the call is
        # synchronous, so the array outlives the inference).
        request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)}, share_inputs=True)
        return request

    # ------------------------------------------------------- part: alignment, ROI
    def align(self, image: np.ndarray) -> np.ndarray:
        """``image`` registered to the bundle's reference (unchanged without alignment);
        raises ``AlignmentError`` when it cannot be: an error, never a verdict."""
        return self.align_with_matrix(image)[0]

    def align_with_matrix(self, image: np.ndarray) -> tuple[np.ndarray, AffineMatrix | None]:
        """(``align(image)``, the matrix a result carries as ``alignment``; None unaligned)."""
        check_image(image)
        if self._aligner is None:
            return image, None
        aligned, matrix = self._aligner.align_with_matrix(image)
        return aligned, tuple(float(v) for v in matrix.reshape(-1))  # type: ignore[return-value]

    def restrict(self, raw_score: float, raw_map: np.ndarray) -> tuple[float, np.ndarray]:
        """One raw output masked to the bundle's ROI (``core.roi.apply_roi``; unchanged
        without one), for callers that stitch their own maps (``runtime.tiled``)."""
        if self.metadata.roi is None:
            return raw_score, raw_map
        return apply_roi(raw_score, raw_map, self.metadata.roi)

    # ----------------------------------------------------------------- inference
    def infer_raw(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3, h, w) float32 model input -> raw scores (N,) and raw maps (N, h, w) float32.

        With a global-context bundle the scores are the fused ones (max of z-scores)."""
        scores, maps, _ = self._infer(batch)
        return scores, maps

    def infer_graph(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3, h, w) model input -> the graph's raw scores (N,) and maps (N, h, w) float32,
        before ROI and fusion: for callers that assemble an image from pieces (``runtime.tiled``
        applies the ROI to the stitched map, never to a tile)."""
        with self._lock:
            request = self._run(batch)
            scores = request.get_output_tensor(self._score_index).data.copy()
            maps = request.get_output_tensor(self._map_index).data.copy()
        return _squeeze_outputs(scores, maps, len(batch))

    def local_outputs(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, 3, h, w) model input -> the graph's local raw scores (N,) float32 and pooled
        features (N, D) float32 (None without a pooled output), before any fusion."""
        with self._lock:
            request = self._run(batch)
            scores = request.get_output_tensor(self._score_index).data.copy()
            pooled = None
            if self._pooled_index is not None:
                pooled = request.get_output_tensor(self._pooled_index).data.copy()
        scores = np.asarray(scores, dtype=np.float32).reshape(len(batch), -1)[:, 0]
        return scores, None if pooled is None else pooled.reshape(len(batch), -1)

    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[dict[str, float]]]:
        """``infer_raw`` plus each image's component z-scores (empty dicts without context)."""
        with self._lock:
            request = self._run(batch)
            scores = request.get_output_tensor(self._score_index).data.copy()
            maps = request.get_output_tensor(self._map_index).data.copy()
            pooled = None
            if self._pooled_index is not None:
                pooled = request.get_output_tensor(self._pooled_index).data.copy()
        scores, maps = _squeeze_outputs(scores, maps, len(batch))
        return self._fused(batch, scores, maps, pooled)

    def _fused(
        self, batch: np.ndarray, scores: np.ndarray, maps: np.ndarray, pooled: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, list[dict[str, float]]]:
        """Local raw scores -> ROI-masked, fused raw scores and per-image component z-scores."""
        scores, maps = apply_roi_batch(scores, maps, self.metadata.roi)
        if self._context is None:
            return scores, maps, [{} for _ in scores]
        images = images_of_input(batch, self.metadata.preprocessing)
        pooled = None if pooled is None else pooled.reshape(len(batch), -1)
        distances = self._context.distances(images=images, pooled=pooled)
        z = self._context.z_scores(distances, local_raw=scores)
        fused, _ = fuse(z)
        components = [
            {name: float(values[i]) for name, values in z.items()} for i in range(len(batch))
        ]
        return fused.astype(np.float32), maps, components

    def inspect(
        self, image: np.ndarray, *, threshold: float | None = None, started: float | None = None
    ) -> InspectionResult:
        """Judge one (H, W, 3) uint8 RGB image at ``threshold`` (default: ``self.threshold``).

        ``started``: the ``perf_counter`` time the inspection began when the caller did work
        before (decoding); the latency and the latency budget count from it."""
        threshold = self._threshold if threshold is None else check_threshold(threshold)
        start = time.perf_counter()
        image, alignment = self.align_with_matrix(image)
        tensor = preprocess(image, self.metadata.preprocessing)
        prepared = time.perf_counter()
        scores, maps, components = self._infer(tensor[None])
        inferred = time.perf_counter()
        timings = {
            "preprocess": (prepared - start) * 1e3,
            "infer": (inferred - prepared) * 1e3,
        }
        origin = start if started is None else started
        raw = RawImageOutputs(
            image, float(scores[0]), maps[0], origin, timings, components[0], alignment
        )
        return self.judge_raw(raw, threshold=threshold)

    def inspect_batch(self, images: Sequence[np.ndarray]) -> list[InspectionResult]:
        """Judge several images with one batched inference; latency is the per-image share."""
        if not images:
            return []
        start = time.perf_counter()
        aligned = [self.align_with_matrix(image) for image in images]
        images = [image for image, _ in aligned]
        batch = np.stack([preprocess(image, self.metadata.preprocessing) for image in images])
        prepared = time.perf_counter()
        scores, maps, components = self._infer(batch)
        inferred = time.perf_counter()
        share = 1e3 / len(images)
        timings = {
            "preprocess": (prepared - start) * share,
            "infer": (inferred - prepared) * share,
        }
        results = []
        for (image, alignment), score, raw_map, parts in zip(
            aligned, scores, maps, components, strict=True
        ):
            raw = RawImageOutputs(
                image, float(score), raw_map, time.perf_counter(), dict(timings), parts, alignment
            )
            result = self.judge_raw(raw)
            results.append(
                dataclasses.replace(
                    result, latency_ms=result.latency_ms + timings["preprocess"] + timings["infer"]
                )
            )
        return results

    def inspect_many(
        self, images: Iterable[np.ndarray], *, jobs: int = 0
    ) -> list[InspectionResult]:
        """Throughput mode: keep ``jobs`` requests in flight (0 = OpenVINO's optimal number).

        Results come back in input order; each latency runs from submission to completion.
        Finished requests are judged while the others still run, so the Python side of one
        image overlaps the inference of the next. Build the inspector with
        ``performance_hint="THROUGHPUT"`` for the most parallelism.
        """
        if jobs <= 0:
            jobs = int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        queue = ov.AsyncInferQueue(self._compiled, max(1, jobs))
        # The callback runs on OpenVINO threads: it only copies outputs and must hold no
        # reference to this inspector (releasing one there deadlocks OpenVINO's executor).
        outputs = _collect_outputs(queue, self._score_index, self._map_index, self._pooled_index)
        pending: dict[int, tuple[float, np.ndarray, np.ndarray, AffineMatrix | None]] = {}
        results: dict[int, InspectionResult] = {}
        for index, image in enumerate(images):
            start = time.perf_counter()
            image, alignment = self.align_with_matrix(image)
            tensor = preprocess(image, self.metadata.preprocessing)[None]
            pending[index] = (start, image, tensor, alignment)
            queue.start_async({0: tensor}, index, share_inputs=True)  # kept alive in pending
            for done in [i for i in list(outputs) if i in pending]:
                results[done] = self._finish_async(pending.pop(done), outputs.pop(done))
        queue.wait_all()
        del queue
        for done in sorted(pending):
            results[done] = self._finish_async(pending[done], outputs.pop(done))
        return [results[i] for i in range(len(results))]

    def _finish_async(
        self,
        submitted: tuple[float, np.ndarray, np.ndarray, AffineMatrix | None],
        output: tuple[np.ndarray, np.ndarray, np.ndarray | None, float],
    ) -> InspectionResult:
        """The result of one ``inspect_many`` request: (start, image, tensor, alignment) and its
        outputs."""
        start, image, tensor, alignment = submitted
        raw_score, raw_map, pooled, done = output
        scores, maps = _squeeze_outputs(raw_score, raw_map, 1)
        scores, maps, parts = self._fused(tensor, scores, maps, pooled)
        raw = RawImageOutputs(
            image, float(scores[0]), maps[0], time.perf_counter(), components=parts[0],
            alignment=alignment,
        )  # fmt: skip
        result = self.judge_raw(raw)
        infer_ms = (done - start) * 1e3
        result.timings_ms["infer"] = infer_ms
        return dataclasses.replace(result, latency_ms=result.latency_ms + infer_ms)

    def inspect_paths(
        self, paths: Iterable[str | Path], *, batch_size: int = 1
    ) -> list[PathOutcome]:
        """Read and judge files (folders are expanded); unreadable files become error outcomes."""
        return list(self.iter_paths(expand_paths(paths), batch_size=batch_size))

    def iter_paths(self, files: Iterable[Path], *, batch_size: int = 1) -> Iterator[PathOutcome]:
        """Judge ``files`` in order, yielding each outcome as soon as its batch is done.

        Files are decoded reduced to the working size (``runtime.camera``); an outcome's
        ``image`` is that working copy."""
        pending: list[tuple[Path, DecodedImage, float]] = []

        def flush() -> Iterator[PathOutcome]:
            if pending:
                results = self.inspect_batch([decoded.image for _, decoded, _ in pending])
                for (path, decoded, decode_ms), result in zip(pending, results, strict=True):
                    shape = decoded.image.shape[:2]
                    result = with_camera_size(result, decoded.source_size, shape)
                    result = dataclasses.replace(
                        result,
                        latency_ms=result.latency_ms + decode_ms,
                        timings_ms={"decode": decode_ms, **result.timings_ms},
                    )
                    yield PathOutcome(path, result, image=decoded.image)
                pending.clear()

        side = self.camera.work_side(self.input_size)
        for path in files:
            try:
                begin = time.perf_counter()
                decoded = read_reduced(path, work_side=side)
                pending.append((path, decoded, (time.perf_counter() - begin) * 1e3))
            except ImageDecodeError as exc:
                yield from flush()
                yield PathOutcome(path, error=str(exc))
                continue
            if len(pending) >= max(1, batch_size):
                yield from flush()
        yield from flush()

    # ------------------------------------------------------------ postprocessing
    def judge_raw(
        self, raw: RawImageOutputs, *, threshold: float | None = None
    ) -> InspectionResult:
        """The result of one image's raw outputs: normalise, resize the raw map to the image,
        judge at ``threshold`` (default: ``self.threshold``) with ``core.verdict``, refine.
        Every ``inspect*`` method ends here; callers that run inference themselves
        (``runtime.tiled``) call it too."""
        threshold = self._threshold if threshold is None else check_threshold(threshold)
        post_start = time.perf_counter()
        meta = self.metadata
        timings = dict(raw.timings_ms)
        image, camera_size = bounded_image(raw.image, self.camera.work_side(self.input_size))
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


def _batch_of_one(model: ov.Model) -> ov.Model:
    """A copy of ``model`` with a static batch of one (CPU kernels for static shapes are
    ~15 % faster here), or ``model`` itself when its batch is already fixed."""
    shape = model.inputs[0].get_partial_shape()
    if shape.rank.is_dynamic or shape[0].is_static:
        return model
    single = model.clone()
    dims = [ov.Dimension(1), *list(shape)[1:]]
    single.reshape({single.inputs[0]: ov.PartialShape(dims)})
    return single


def _deferred_compile(
    core: ov.Core, model: ov.Model, device: str, config: dict[str, object]
) -> Callable[[], ov.CompiledModel]:
    """A function compiling ``model`` when first called (most stations never batch)."""

    def compile_now() -> ov.CompiledModel:
        return core.compile_model(model, device, config)

    return compile_now


def _aligner(metadata: BundleMetadata, bundle_dir: Path) -> Aligner | None:
    """The bundle's aligner (its checksummed reference image), or None without alignment."""
    spec = metadata.alignment
    if spec is None:
        return None
    if spec.file not in metadata.files:
        raise BundleError(f"{bundle_dir}: metadata lists no checksum for {spec.file}")
    try:
        reference = read_image(bundle_dir / spec.file)
    except ImageDecodeError as exc:
        raise BundleError(f"{bundle_dir}: unreadable alignment reference: {exc}") from exc
    return Aligner(reference, spec, metadata.roi)


def _bundle_refiner(metadata: BundleMetadata) -> MaskRefiner | None:
    """The bundle's measured refiner choice, seeded from the station's refine config."""
    from inspection.refine.config import load_refine_config
    from inspection.refine.factory import bundle_refiner

    refiner = bundle_refiner(metadata, load_refine_config())
    if refiner is not None and metadata.refinement is not None:
        log.info("%s refines NG masks: %s", metadata.bundle_id, metadata.refinement.describe())
    return refiner


def _output_index(compiled: ov.CompiledModel, name: str) -> int:
    """Position of the output named ``name`` among the compiled model's outputs."""
    for index, port in enumerate(compiled.outputs):
        if name in port.get_names():
            return index
    raise BundleError(f"model has no output named {name!r}")


def _collect_outputs(
    queue: ov.AsyncInferQueue, score_index: int, map_index: int, pooled_index: int | None = None
) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None, float]]:
    """Register a callback storing ``{userdata: (score, map, pooled or None, finish time)}``."""
    outputs: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None, float]] = {}

    def on_done(request: ov.InferRequest, index: int) -> None:
        pooled = None
        if pooled_index is not None:
            pooled = request.get_output_tensor(pooled_index).data.copy()
        outputs[index] = (
            request.get_output_tensor(score_index).data.copy(),
            request.get_output_tensor(map_index).data.copy(),
            pooled,
            time.perf_counter(),
        )

    queue.set_callback(on_done)
    return outputs


def _global_context(
    compiled: ov.CompiledModel, metadata: BundleMetadata, bundle_dir: Path
) -> tuple[GlobalContext | None, int | None]:
    """The bundle's global-context model and the index of its pooled-features output."""
    spec = metadata.global_context
    if spec is None:
        return None, None
    pooled = metadata.output_names.pooled
    if not spec.file or (spec.layers and pooled is None):
        raise BundleError(
            f"{bundle_dir}: global_context needs a file (and a pooled output for its layers)"
        )
    if spec.file not in metadata.files:
        raise BundleError(f"{bundle_dir}: metadata lists no checksum for {spec.file}")
    try:
        context = GlobalContext.load(bundle_dir / spec.file)
    except (OSError, ValueError, KeyError) as exc:
        raise BundleError(f"{bundle_dir}: unreadable global-context file: {exc}") from exc
    return context, (_output_index(compiled, pooled) if spec.layers else None)


def _squeeze_outputs(
    scores: np.ndarray, maps: np.ndarray, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Model outputs -> scores (N,) float32 and maps (N, h, w) float32."""
    scores = np.asarray(scores, dtype=np.float32).reshape(count, -1)[:, 0]
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim == 4:
        maps = maps[:, 0]
    if maps.ndim != 3 or maps.shape[0] != count:
        raise BundleError(f"model returned anomaly maps of shape {maps.shape}, expected (N, h, w)")
    return scores, maps


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders expanded (recursively) to their image files, sorted."""
    expanded: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            expanded.extend(
                sorted(
                    p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                )
            )
        else:
            expanded.append(path)
    return expanded


__all__ = ["Inspector", "PathOutcome", "check_image", "expand_paths"]
