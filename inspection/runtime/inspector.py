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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openvino as ov

from inspection.core.bundle import BundleMetadata, verify_bundle
from inspection.core.errors import BundleError, ImageDecodeError
from inspection.core.images import IMAGE_SUFFIXES, read_image
from inspection.core.regions import extract_regions
from inspection.core.types import InspectionResult
from inspection.refine.base import MaskRefiner
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

    @property
    def ok(self) -> bool:
        return self.result is not None


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
    ) -> None:
        self.metadata = metadata
        self.bundle_dir = bundle_dir
        self.refiner = refiner
        self._compiled = compiled
        names = metadata.output_names
        try:
            self._score_port = compiled.output(names["score"])
            self._map_port = compiled.output(names["map"])
        except (KeyError, RuntimeError) as exc:
            raise BundleError(
                f"{bundle_dir}: model has no outputs named {names}; the bundle is inconsistent"
            ) from exc
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()
        self._threshold = metadata.image_threshold
        if threshold is not None:
            self.set_threshold(threshold)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_bundle(
        cls,
        path: str | Path,
        *,
        device: str = "CPU",
        refiner: MaskRefiner | None = None,
        threshold: float | None = None,
        performance_hint: str = "LATENCY",
        num_threads: int | None = None,
    ) -> Inspector:
        """Verify the bundle's checksums, then compile its IR on ``device``."""
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
        precision_hint = metadata.extra.get("inference_precision")
        if precision_hint and device == "CPU":
            config["INFERENCE_PRECISION_HINT"] = precision_hint
        if num_threads:
            config["INFERENCE_NUM_THREADS"] = int(num_threads)
        try:
            model = core.read_model(bundle_dir / metadata.model_file)
            compiled = core.compile_model(model, device, config)
        except RuntimeError as exc:
            raise BundleError(f"{bundle_dir}: OpenVINO cannot load the model: {exc}") from exc
        log.info("loaded bundle %s on %s (%s)", metadata.bundle_id, device, performance_hint)
        return cls(compiled, metadata, bundle_dir=bundle_dir, refiner=refiner, threshold=threshold)

    # ---------------------------------------------------------------- properties
    @property
    def threshold(self) -> float:
        """Image threshold in normalised score space; score > threshold means NG."""
        return self._threshold

    def set_threshold(self, value: float) -> None:
        """Change the image threshold for all following inspections (0 < value < 1)."""
        value = float(value)
        if not 0.0 < value < 1.0:
            raise ValueError(f"threshold must be between 0 and 1 (exclusive), got {value}")
        self._threshold = value

    @property
    def model_version(self) -> str:
        """``<product>/<bundle id>``, e.g. ``brick/v0003-int8``."""
        return f"{self.metadata.product}/{self.metadata.bundle_id}"

    @property
    def input_size(self) -> tuple[int, int]:
        return self.metadata.preprocessing.input_size

    # ----------------------------------------------------------------- inference
    def infer_raw(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3, h, w) float32 model input -> raw scores (N,) and raw maps (N, h, w) float32."""
        with self._lock:
            self._request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
            scores = self._request.get_tensor(self._score_port).data.copy()
            maps = self._request.get_tensor(self._map_port).data.copy()
        return _squeeze_outputs(scores, maps, len(batch))

    def inspect(self, image: np.ndarray) -> InspectionResult:
        """Judge one (H, W, 3) uint8 RGB image."""
        start = time.perf_counter()
        tensor = preprocess(image, self.metadata.preprocessing)
        prepared = time.perf_counter()
        scores, maps = self.infer_raw(tensor[None])
        inferred = time.perf_counter()
        timings = {
            "preprocess": (prepared - start) * 1e3,
            "infer": (inferred - prepared) * 1e3,
        }
        return self._finish(image, float(scores[0]), maps[0], start, timings)

    def inspect_batch(self, images: Sequence[np.ndarray]) -> list[InspectionResult]:
        """Judge several images with one batched inference; latency is the per-image share."""
        if not images:
            return []
        start = time.perf_counter()
        batch = np.stack([preprocess(image, self.metadata.preprocessing) for image in images])
        prepared = time.perf_counter()
        scores, maps = self.infer_raw(batch)
        inferred = time.perf_counter()
        share = 1e3 / len(images)
        timings = {
            "preprocess": (prepared - start) * share,
            "infer": (inferred - prepared) * share,
        }
        results = []
        for image, score, raw_map in zip(images, scores, maps, strict=True):
            post_start = time.perf_counter()
            result = self._finish(image, float(score), raw_map, post_start, dict(timings))
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
        Build the inspector with ``performance_hint="THROUGHPUT"`` for the most parallelism.
        """
        if jobs <= 0:
            jobs = int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        queue = ov.AsyncInferQueue(self._compiled, max(1, jobs))
        results: dict[int, InspectionResult] = {}
        failures: list[BaseException] = []

        def on_done(request: ov.InferRequest, userdata: tuple[int, np.ndarray, float]) -> None:
            index, image, start = userdata
            try:
                scores, maps = _squeeze_outputs(
                    request.get_tensor(self._score_port).data.copy(),
                    request.get_tensor(self._map_port).data.copy(),
                    1,
                )
                results[index] = self._finish(image, float(scores[0]), maps[0], start, {})
            except BaseException as exc:  # re-raised in the caller's thread below
                failures.append(exc)

        queue.set_callback(on_done)
        count = 0
        for index, image in enumerate(images):
            start = time.perf_counter()
            tensor = preprocess(image, self.metadata.preprocessing)[None]
            queue.start_async({0: tensor}, (index, image, start))
            count += 1
        queue.wait_all()
        if failures:
            raise failures[0]
        return [results[i] for i in range(count)]

    def inspect_paths(
        self, paths: Iterable[str | Path], *, batch_size: int = 1
    ) -> list[PathOutcome]:
        """Read and judge files (folders are expanded); unreadable files become error outcomes."""
        outcomes: list[PathOutcome] = []
        pending: list[tuple[Path, np.ndarray]] = []

        def flush() -> None:
            if pending:
                results = self.inspect_batch([image for _, image in pending])
                outcomes.extend(
                    PathOutcome(p, r) for (p, _), r in zip(pending, results, strict=True)
                )
                pending.clear()

        for path in expand_paths(paths):
            try:
                pending.append((path, read_image(path)))
            except ImageDecodeError as exc:
                flush()
                outcomes.append(PathOutcome(path, error=str(exc)))
                continue
            if len(pending) >= max(1, batch_size):
                flush()
        flush()
        return outcomes

    # ------------------------------------------------------------ postprocessing
    def _finish(
        self,
        image: np.ndarray,
        raw_score: float,
        raw_map: np.ndarray,
        start: float,
        timings: dict[str, float],
    ) -> InspectionResult:
        post_start = time.perf_counter()
        meta = self.metadata
        score = normalize_score(raw_score, meta.normalization)
        height, width = image.shape[:2]
        anomaly_map = resize_map(normalize_map(raw_map, meta.normalization), height, width)
        mask = anomaly_map > meta.pixel_threshold
        threshold = self._threshold
        result = InspectionResult(
            score=score,
            threshold=threshold,
            verdict="NG" if score > threshold else "OK",
            anomaly_map=anomaly_map,
            mask=mask,
            regions=extract_regions(anomaly_map, mask),
            latency_ms=0.0,
            model_version=self.model_version,
            timings_ms=timings,
        )
        timings["postprocess"] = (time.perf_counter() - post_start) * 1e3
        if self.refiner is not None and result.is_defective:
            refine_start = time.perf_counter()
            result = self.refiner.refine_result(image, result)
            timings["refine"] = (time.perf_counter() - refine_start) * 1e3
        return dataclasses.replace(
            result, latency_ms=(time.perf_counter() - start) * 1e3, timings_ms=timings
        )


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
