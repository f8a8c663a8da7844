"""SAM on the line station: OpenVINO image encoder + mask decoder, torch-free; ``refine_result``
refines within a time budget, keeping raw the regions it had no time for."""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import openvino as ov

from inspection.core.signing import PublicKeys
from inspection.core.types import InspectionResult
from inspection.refine.bundle import RefinerBundleMetadata, verify_refiner_bundle
from inspection.refine.config import RefineConfig
from inspection.refine.guards import Candidate, check_image, merge
from inspection.refine.prompts import RegionPrompt, prompts_from_map

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamMasks:
    """One mask per prompt: ``masks`` (N, H, W) bool, ``logits`` (N, H, W) float32 (mask where
    > 0) and ``iou`` (N,) float32, SAM's own predicted IoU of each mask."""

    masks: np.ndarray
    logits: np.ndarray
    iou: np.ndarray


def resized_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(h, w) after scaling the longest side to ``long_side`` (SAM's ResizeLongestSide)."""
    scale = long_side / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def preprocess(image: np.ndarray, metadata: RefinerBundleMetadata) -> np.ndarray:
    """(H, W, 3) uint8 RGB → (1, 3, S, S) float32 encoder input (resize, normalise, pad)."""
    size = metadata.input_size
    new_h, new_w = resized_shape(image.shape[0], image.shape[1], size)
    upscale = new_h >= image.shape[0]
    resized = cv2.resize(
        image, (new_w, new_h), interpolation=cv2.INTER_LINEAR if upscale else cv2.INTER_AREA
    )
    mean = np.asarray(metadata.pixel_mean, dtype=np.float32)
    std = np.asarray(metadata.pixel_std, dtype=np.float32)
    padded = np.zeros((size, size, 3), dtype=np.float32)
    padded[:new_h, :new_w] = (resized.astype(np.float32) - mean) / std
    return np.ascontiguousarray(padded.transpose(2, 0, 1)[None])


class SamRefiner:
    """Torch-free SAM refiner on OpenVINO (CPU). ``refine_result`` is thread-safe (one image at
    a time); ``set_image``/``refine`` keep per-object state: do not share the object for them."""

    name = "sam"

    def __init__(
        self,
        encoder: ov.CompiledModel,
        decoder: ov.CompiledModel,
        metadata: RefinerBundleMetadata,
        config: RefineConfig,
        budget_ms: float,
    ) -> None:
        self._encoder = encoder
        self._decoder = decoder
        self.metadata = metadata
        self.config = config
        self.budget_ms = budget_ms
        self._embeddings: np.ndarray | None = None
        self._image_shape: tuple[int, int] = (0, 0)
        self.last_encoder_ms = 0.0
        self._lock = threading.Lock()
        if metadata.random_weights:
            self.name = "sam-random"

    @classmethod
    def from_bundle(
        cls,
        path: str | Path,
        *,
        budget_ms: float | None = None,
        config: RefineConfig | None = None,
        num_threads: int | None = None,
        public_key: PublicKeys | None = None,
    ) -> SamRefiner:
        """Read and verify the bundle in memory (``verify_refiner_bundle``), compile both models
        for CPU from those bytes and warn loudly on random weights."""
        config = config or RefineConfig()
        verified = verify_refiner_bundle(path, public_key)
        metadata = verified.metadata
        if metadata.random_weights:
            message = (
                f"SAM refiner bundle {path} has RANDOM WEIGHTS: its masks are meaningless. "
                "Use it for latency measurements only; export from a real checkpoint for production."
            )
            log.warning(message)
            warnings.warn(message, UserWarning, stacklevel=2)
        core = ov.Core()
        threads = config.sam.num_threads if num_threads is None else num_threads
        properties: dict[str, object] = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": config.sam.inference_precision,
        }
        if threads > 0:
            properties["INFERENCE_NUM_THREADS"] = threads
        encoder, decoder = (
            _compile(core, *verified.model(xml), properties)
            for xml in (metadata.encoder_file, metadata.decoder_file)
        )
        budget = config.sam.budget_ms if budget_ms is None else budget_ms
        signed = (
            f"signed by {verified.signed_by}" if verified.signed_by else "signature not checked"
        )
        log.info(
            "loaded SAM refiner %s (%s, %s; %s)", path, metadata.backend, metadata.precision, signed
        )
        return cls(encoder, decoder, metadata, config, budget)

    def set_image(self, image: np.ndarray) -> None:
        """Run the image encoder on (H, W, 3) uint8 RGB and keep the embeddings."""
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"image must be a (H, W, 3) uint8 RGB array, got {getattr(image, 'shape', type(image))}"
            )
        if image.dtype != np.uint8:
            raise ValueError(f"image must be uint8, got {image.dtype}")
        start = time.perf_counter()
        tensor = preprocess(image, self.metadata)
        self._embeddings = self._encoder(tensor)[0]
        self._image_shape = (int(image.shape[0]), int(image.shape[1]))
        self.last_encoder_ms = (time.perf_counter() - start) * 1e3

    def reset_image(self) -> None:
        self._embeddings = None

    def decode(self, points: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw decoder call: ``points`` (N, 2) (x, y) in image pixels, ``labels`` (N,) with
        1/0 points and 2/3 box corners. Returns low-res logits (4, 256, 256) and IoU (4,)."""
        if self._embeddings is None:
            raise RuntimeError("call set_image() first: no image embeddings for mask prediction")
        points = np.asarray(points, dtype=np.float32).reshape(-1, 2)
        labels = np.asarray(labels, dtype=np.float32).reshape(-1)
        if len(points) != len(labels):
            raise ValueError(f"{len(points)} points but {len(labels)} labels")
        if not np.isin(labels, (2.0, 3.0)).any():  # SAM pads point-only prompts
            points = np.concatenate([points, np.zeros((1, 2), np.float32)])
            labels = np.concatenate([labels, np.full(1, -1.0, np.float32)])
        height, width = self._image_shape
        new_h, new_w = resized_shape(height, width, self.metadata.input_size)
        coords = points * np.asarray([new_w / width, new_h / height], dtype=np.float32)
        outputs = self._decoder([self._embeddings, coords[None], labels[None]])
        return outputs[0][0], outputs[1][0]

    def refine(self, prompts: Sequence[RegionPrompt]) -> SamMasks:
        """One mask per prompt (box + positive/negative points) at the image's resolution."""
        if self._embeddings is None:
            raise RuntimeError("call set_image() first: no image embeddings for mask prediction")
        height, width = self._image_shape
        logits = np.zeros((len(prompts), height, width), dtype=np.float32)
        ious = np.zeros(len(prompts), dtype=np.float32)
        for i, prompt in enumerate(prompts):
            if prompt.region.shape != self._image_shape:
                raise ValueError(
                    f"prompt is for a {prompt.region.shape} image, the set image is {self._image_shape}"
                )
            low_res, iou = self.decode(*_sam_inputs(prompt))
            best = int(np.argmax(iou[1:]) + 1) if self.config.sam.multimask else 0
            logits[i] = self.upscale(low_res[best])
            ious[i] = iou[best]
        return SamMasks(masks=logits > self.metadata.mask_threshold, logits=logits, iou=ious)

    def upscale(self, low_res: np.ndarray) -> np.ndarray:
        """(256, 256) logits → (H, W) logits: as SAM's postprocess_masks (resize, crop, resize)."""
        size = self.metadata.input_size
        height, width = self._image_shape
        new_h, new_w = resized_shape(height, width, size)
        full = cv2.resize(low_res, (size, size), interpolation=cv2.INTER_LINEAR)
        cropped = np.ascontiguousarray(full[:new_h, :new_w])
        return cv2.resize(cropped, (width, height), interpolation=cv2.INTER_LINEAR)

    def refine_result(self, image: np.ndarray, result: InspectionResult) -> InspectionResult:
        """Refined copy of an NG ``result`` (OK results unchanged) within ``budget_ms``: regions
        decoded largest first, the rest raw once the budget is spent."""
        if not result.is_defective:
            return result
        check_image(image, result)
        with self._lock:
            return self._refine_locked(image, result)

    def _refine_locked(self, image: np.ndarray, result: InspectionResult) -> InspectionResult:
        start = time.perf_counter()
        prompts = prompts_from_map(result.anomaly_map, result.mask, self.config.prompts)
        if not prompts:
            return result
        candidates: list[Candidate | None] = []
        self.last_encoder_ms = 0.0
        if not self._over_budget(start):
            self.set_image(image)
        for prompt in prompts:
            if self._embeddings is None or self._over_budget(start):
                candidates.append(None)
                continue
            out = self.refine([prompt])
            candidates.append(Candidate(out.masks[0], float(out.iou[0])))
        self.reset_image()
        total_ms = (time.perf_counter() - start) * 1e3
        timings = {
            "refine_ms": total_ms,
            "refine_encoder_ms": self.last_encoder_ms,
            "refine_decoder_ms": total_ms - self.last_encoder_ms,
            "refine_skipped_budget": float(sum(c is None for c in candidates)),
        }
        refined, _ = merge(result, prompts, candidates, self.config.guards, self.name, timings)
        return refined

    def _over_budget(self, start: float) -> bool:
        return (time.perf_counter() - start) * 1e3 > self.budget_ms


def _compile(
    core: ov.Core, xml: bytes, weights: bytes, properties: dict[str, object]
) -> ov.CompiledModel:
    """Compile an IR from verified bytes in memory (never re-read from the folder)."""
    model = core.read_model(model=xml, weights=ov.Tensor(np.frombuffer(weights, np.uint8)))
    return core.compile_model(model, "CPU", properties)


def _sam_inputs(prompt: RegionPrompt) -> tuple[np.ndarray, np.ndarray]:
    points, labels = prompt.points_and_labels()
    x0, y0, x1, y1 = prompt.box
    box = np.asarray([[x0, y0], [x1, y1]], dtype=np.float32)
    corners = np.asarray([2.0, 3.0], dtype=np.float32)
    return np.concatenate([points, box]), np.concatenate([labels, corners])
