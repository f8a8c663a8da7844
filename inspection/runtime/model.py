"""One verified bundle compiled on OpenVINO: raw inference and the part set-up around it.

``BundleModel``, the layer under ``Inspector``, owns the compiled model and its infer requests:
``run`` gives the graph's outputs, ``fuse`` ROI-masks and fuses them, ``infer`` does both.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache, partial
from pathlib import Path

import numpy as np
import openvino as ov
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from inspection.core.errors import BundleError, ImageDecodeError
from inspection.core.global_context import GlobalContext, fuse, images_of_input
from inspection.core.images import decode_reduced, grey_replicated
from inspection.core.roi import apply_roi, apply_roi_batch
from inspection.core.signing import VerifiedBundle, read_verified
from inspection.core.types import AffineMatrix
from inspection.runtime.alignment import Aligner
from inspection.runtime.graph import optimize_graph
from inspection.runtime.preprocess import check_image, model_input
from inspection.runtime.warmup import WarmOutcome, WarmRequest, WarmStats

log = logging.getLogger(__name__)

PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT")


@dataclass(frozen=True)
class GraphOutputs:
    """The graph's raw outputs for N images before ROI and fusion: (N,) scores, (N, h, w)
    maps and (N, D) pooled features (``None`` without a pooled output), float32."""

    scores: np.ndarray
    maps: np.ndarray
    pooled: np.ndarray | None = None


@dataclass(frozen=True)
class RawBatch:
    """Judge-ready raw outputs of N images: ROI-masked, fused scores and maps, and each
    image's component z-scores (empty without a global context)."""

    scores: np.ndarray
    maps: np.ndarray
    components: tuple[dict[str, float], ...]


@dataclass(frozen=True)
class Finished:
    """One asynchronous request's graph outputs (batch of one) and its ``perf_counter`` end."""

    outputs: GraphOutputs
    finished: float


IN_FLIGHT = 32
"""Images a caller hands ``BundleModel.run_each`` at a time (their inputs held together)."""


class BundleModel:
    """A verified bundle compiled for one device (``BundleModel.load``); thread-safe."""

    def __init__(
        self,
        compiled: ov.CompiledModel,
        verified: VerifiedBundle,
        *,
        batched: Callable[[], ov.CompiledModel] | None = None,
        throughput: Callable[[], ov.CompiledModel] | None = None,
    ) -> None:
        """``batched`` compiles the model for other batch sizes (on first use) when
        ``compiled`` has a static batch of one; ``throughput`` compiles it for ``run_each``
        (None: ``run_each`` keeps ``compiled``'s optimal number of requests in flight)."""
        self.verified = verified
        self.metadata = verified.metadata
        self.bundle_dir = bundle_dir = verified.directory
        metadata = self.metadata
        self._compiled = compiled
        names = metadata.output_names
        self._score_index = _output_index(compiled, names.score, bundle_dir)
        self._map_index = _output_index(compiled, names.map, bundle_dir)
        self._context, self._pooled_index = _global_context(compiled, verified)
        self._aligner = _aligner(verified)
        self._request = compiled.create_infer_request()
        self._compile_batched = batched
        self._compile_throughput = throughput
        self._batched_request: ov.InferRequest | None = None  # compiled on first use
        self._lock = threading.Lock()
        height, width = metadata.preprocessing.input_size
        blank = model_input(np.zeros((height, width, 3), np.uint8), metadata.preprocessing)
        self._warm = WarmRequest(self._request, blank[None])

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        device: str = "CPU",
        performance_hint: str = "LATENCY",
        num_threads: int | None = None,
        optimize: bool = True,
        public_key: Ed25519PublicKey | None = None,
    ) -> BundleModel:
        """Read the bundle once into memory, verify it there (``core.signing.read_verified``)
        and compile those very bytes: a file swapped after the check is never loaded. A compile
        of the same bytes with the same settings made earlier in the process is taken again
        (``_compiled``): its golden outputs are checked by the caller on every load all the same.
        ``optimize``: output-preserving rewrites (``runtime.graph``) and a static batch of one."""
        bundle_dir = Path(path)
        if performance_hint not in PERFORMANCE_HINTS:
            raise ValueError(
                f"performance_hint must be one of {PERFORMANCE_HINTS}, got {performance_hint!r}"
            )
        verified = read_verified(bundle_dir, public_key)
        metadata = verified.metadata
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
            compiled, batched, throughput = _compiled(
                verified.file(metadata.model_file), verified.file(metadata.weights_file),
                device, tuple(config.items()), optimize,
            )  # fmt: skip
        except RuntimeError as exc:
            raise BundleError(f"{bundle_dir}: OpenVINO cannot load the model: {exc}") from exc
        log.info("loaded bundle %s on %s (%s)", metadata.bundle_id, device, performance_hint)
        return cls(compiled, verified, batched=batched, throughput=throughput)

    def reread(self) -> BundleModel:
        """This compiled model with the bundle's files read and checked again (no signature):
        for export, which rewrites the metadata and global context of a bundle it is running.
        Nothing is compiled; ``BundleError`` when the model or weights file changed."""
        verified = read_verified(self.bundle_dir)
        for name in (self.metadata.model_file, self.metadata.weights_file):
            if verified.file(name) != self.verified.file(name):
                raise BundleError(f"{self.bundle_dir}: {name} changed since it was compiled")
        return BundleModel(
            self._compiled, verified, batched=self._compile_batched,
            throughput=self._compile_throughput,
        )  # fmt: skip

    def throughput(self) -> BundleModel:
        """This bundle on its THROUGHPUT compile (``run_each``'s, made on first use) for
        ``async_queue``: the same verified bytes and rewritten graph, nothing read, checked or
        rewritten again (itself when loaded for THROUGHPUT)."""
        if self._compile_throughput is None:
            return self
        return BundleModel(self._compile_throughput(), self.verified, batched=self._compile_batched)

    @property
    def context(self) -> GlobalContext | None:
        return self._context

    @property
    def compiled(self) -> ov.CompiledModel:
        """The compiled model serving batches of one."""
        return self._compiled

    def align(self, image: np.ndarray) -> tuple[np.ndarray, AffineMatrix | None]:
        """``image`` as the model takes it (grey when trained on grey, registered to the
        bundle's reference) and its alignment matrix (None: no alignment). Raises
        ``AlignmentError`` when it cannot be registered: an error, never a verdict."""
        return self.align_checked(check_image(image))

    def align_checked(self, image: np.ndarray) -> tuple[np.ndarray, AffineMatrix | None]:
        """``align`` of an image already through ``preprocess.check_image``."""
        domain = self.metadata.input_domain
        if domain is not None and domain.colour == "grey":
            image = grey_replicated(image)
        if self._aligner is None:
            return image, None
        aligned, matrix = self._aligner.align_with_matrix(image)
        return aligned, tuple(float(v) for v in matrix.reshape(-1))  # type: ignore[return-value]

    def restrict(self, raw_score: float, raw_map: np.ndarray) -> tuple[float, np.ndarray]:
        """One raw output masked to the bundle's ROI, for ``runtime.tiled``'s stitched maps."""
        if self.metadata.roi is None:
            return raw_score, raw_map
        return apply_roi(raw_score, raw_map, self.metadata.roi)

    def run(self, batch: np.ndarray) -> GraphOutputs:
        """Model input (``preprocess.model_batch``) -> the graph's raw outputs, before ROI and
        fusion."""
        with self._lock:
            request = self._request
            if len(batch) != 1 and self._compile_batched is not None:
                if self._batched_request is None:
                    log.info("compiling %s for batches of more than one", self.metadata.bundle_id)
                    self._batched_request = self._compile_batched().create_infer_request()
                request = self._batched_request
            self._warm.stop()  # a warm run still in flight never holds up a real part
            # share_inputs: no copy (the call is synchronous: the array outlives it)
            request.infer({0: np.ascontiguousarray(batch)}, share_inputs=True)
            outputs = _copy_outputs(
                request, self._score_index, self._map_index, self._pooled_index, len(batch)
            )
            self._warm.last_end = time.perf_counter()
            return outputs

    def run_each(self, batch: np.ndarray) -> GraphOutputs:
        """``run`` of each image of ``batch`` alone, the same numbers, with OpenVINO's optimal
        number of requests in flight on a THROUGHPUT compile of the graph (made on first use,
        shared by ``reread`` copies): the machine's throughput for scoring many images (on
        2 cores, two one-thread streams), where ``run`` of a batch uses one stream."""
        compile_throughput = self._compile_throughput
        compiled = self._compiled if compile_throughput is None else compile_throughput()
        queue, finished = self._queue(compiled)
        batch = np.ascontiguousarray(batch)
        try:
            for index in range(len(batch)):
                # share_inputs: no copy (``batch`` outlives the requests: waited for below)
                queue.start_async({0: batch[index : index + 1]}, index, share_inputs=True)
        finally:
            queue.wait_all()  # never leave requests running on an array about to be freed
        done = [finished[index].outputs for index in range(len(batch))]
        pooled = [d.pooled for d in done]
        return GraphOutputs(
            np.concatenate([d.scores for d in done]),
            np.concatenate([d.maps for d in done]),
            None if self._pooled_index is None else np.concatenate(pooled),  # type: ignore[arg-type]
        )

    def warm(self, idle_ms: float) -> WarmOutcome:
        """Start one warm run (``runtime.warmup``) unless the last inference ended within
        ``idle_ms`` or one is running; the next ``run`` cancels it."""
        if not self._lock.acquire(blocking=False):
            return "busy"
        try:
            return self._warm.start(idle_ms)
        finally:
            self._lock.release()

    @property
    def warm_stats(self) -> WarmStats:
        """Warm runs since load: started, finished before the part, cancelled by it."""
        return self._warm.stats

    def fuse(self, batch: np.ndarray, outputs: GraphOutputs, *, masked: bool = True) -> RawBatch:
        """Graph outputs of ``batch`` -> ROI-masked (unless not ``masked``), fused ``RawBatch``."""
        roi = self.metadata.roi if masked else None
        scores, maps = apply_roi_batch(outputs.scores, outputs.maps, roi)
        if self._context is None:
            return RawBatch(scores, maps, tuple({} for _ in scores))
        images = images_of_input(batch, self.metadata.preprocessing)
        distances = self._context.distances(images=images, pooled=outputs.pooled)
        z = self._context.z_scores(distances, local_raw=scores)
        fused, _ = fuse(z)
        components = tuple(
            {name: float(values[i]) for name, values in z.items()} for i in range(len(batch))
        )
        return RawBatch(fused.astype(np.float32), maps, components)

    def infer(self, batch: np.ndarray) -> RawBatch:
        """``run`` then ``fuse``."""
        return self.fuse(batch, self.run(batch))

    def async_queue(self, jobs: int = 0) -> tuple[ov.AsyncInferQueue, dict[int, Finished]]:
        """An ``AsyncInferQueue`` of ``jobs`` requests (0: OpenVINO's optimal number) and the
        dict its callback fills: ``{userdata: Finished}``."""
        return self._queue(self._compiled, jobs)

    def _queue(
        self, compiled: ov.CompiledModel, jobs: int = 0
    ) -> tuple[ov.AsyncInferQueue, dict[int, Finished]]:
        """``async_queue`` on ``compiled`` (this model's graph, compiled for some hint)."""
        if jobs <= 0:
            jobs = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        queue = ov.AsyncInferQueue(compiled, max(1, jobs))
        finished = _collect_outputs(queue, self._score_index, self._map_index, self._pooled_index)
        return queue, finished


def _copy_outputs(
    request: ov.InferRequest, score: int, amap: int, pooled: int | None, count: int
) -> GraphOutputs:
    """The request's outputs copied out of OpenVINO's buffers: (N,) scores, (N, h, w) maps."""
    scores = request.get_output_tensor(score).data.astype(np.float32).reshape(count, -1)[:, 0]
    maps = request.get_output_tensor(amap).data.astype(np.float32)
    if maps.ndim == 4:
        maps = maps[:, 0]
    if maps.ndim != 3 or maps.shape[0] != count:
        raise BundleError(f"model returned anomaly maps of shape {maps.shape}, expected (N, h, w)")
    features = None if pooled is None else request.get_output_tensor(pooled).data.copy()
    return GraphOutputs(scores, maps, None if features is None else features.reshape(count, -1))


def _collect_outputs(
    queue: ov.AsyncInferQueue, score_index: int, map_index: int, pooled_index: int | None = None
) -> dict[int, Finished]:
    """Register a callback storing ``{userdata: Finished}``. It runs on OpenVINO threads: it
    only copies outputs and must hold no reference to a model or inspector (releasing one
    there deadlocks OpenVINO's executor)."""
    outputs: dict[int, Finished] = {}

    def on_done(request: ov.InferRequest, index: int) -> None:
        copied = _copy_outputs(request, score_index, map_index, pooled_index, 1)
        outputs[index] = Finished(copied, time.perf_counter())

    queue.set_callback(on_done)
    return outputs


def _batch_of_one(model: ov.Model) -> ov.Model:
    """``model`` with a static batch of one (faster CPU kernels), unless already fixed."""
    shape = model.inputs[0].get_partial_shape()
    if shape.rank.is_dynamic or shape[0].is_static:
        return model
    single = model.clone()
    dims = [ov.Dimension(1), *list(shape)[1:]]
    single.reshape({single.inputs[0]: ov.PartialShape(dims)})
    return single


def _aligner(verified: VerifiedBundle) -> Aligner | None:
    spec = verified.metadata.alignment
    if spec is None:
        return None
    try:
        reference = decode_reduced(verified.file(spec.file), name=spec.file).image
    except ImageDecodeError as exc:
        raise BundleError(f"{verified.directory}: unreadable alignment reference: {exc}") from exc
    return Aligner(reference, spec, verified.metadata.roi)


COMPILED_KEPT = 2
"""Compiled bundles ``BundleModel.load`` keeps for a later load of the same verified bytes with
the same settings: export checks a product's FP32 and INT8 bundles, then ``promote_fastest``
times both, in one process. A station that swapped its model holds at most this many old ones."""


@lru_cache(maxsize=COMPILED_KEPT)
def _compiled(
    model_xml: bytes,
    weights: bytes,
    device: str,
    config_items: tuple[tuple[str, object], ...],
    optimize: bool,
) -> tuple[
    ov.CompiledModel, Callable[[], ov.CompiledModel] | None, Callable[[], ov.CompiledModel] | None
]:
    """``model_xml`` and ``weights`` (verified bytes; the cache key is those bytes, so a load
    never gets another model's compile) compiled on ``device`` with ``config_items``: the
    compiled model, the compile for other batch sizes and the THROUGHPUT compile (both made on
    first use; None when not needed). ``RuntimeError`` when OpenVINO cannot read or compile it."""
    core = ov.Core()
    config = dict(config_items)
    model = core.read_model(model=model_xml, weights=ov.Tensor(np.frombuffer(weights, np.uint8)))
    batched = None
    if optimize:
        optimize_graph(model)
        single = _batch_of_one(model)
        if single is not model:  # compiled once, shared by ``reread`` copies
            batched = cache(partial(core.compile_model, model, device, config))
        model = single
    compiled = core.compile_model(model, device, config)
    throughput = None
    if config["PERFORMANCE_HINT"] != "THROUGHPUT":  # else ``compiled`` is that compile
        streams = {**config, "PERFORMANCE_HINT": "THROUGHPUT"}
        throughput = cache(partial(core.compile_model, model, device, streams))
    return compiled, batched, throughput


def _output_index(compiled: ov.CompiledModel, name: str, bundle_dir: Path) -> int:
    for index, port in enumerate(compiled.outputs):
        if name in port.get_names():
            return index
    raise BundleError(
        f"{bundle_dir}: model has no output named {name!r}; the bundle is inconsistent"
    )


def _global_context(
    compiled: ov.CompiledModel, verified: VerifiedBundle
) -> tuple[GlobalContext | None, int | None]:
    """The bundle's global-context model and the index of its pooled-features output."""
    metadata, bundle_dir = verified.metadata, verified.directory
    spec = metadata.global_context
    if spec is None:
        return None, None
    pooled = metadata.output_names.pooled
    if not spec.file or (spec.layers and pooled is None):
        raise BundleError(
            f"{bundle_dir}: global_context needs a file (and a pooled output for its layers)"
        )
    try:
        context = GlobalContext.load(io.BytesIO(verified.file(spec.file)))
    except (OSError, ValueError, KeyError) as exc:
        raise BundleError(f"{bundle_dir}: unreadable global-context file: {exc}") from exc
    return context, (_output_index(compiled, pooled, bundle_dir) if spec.layers else None)
