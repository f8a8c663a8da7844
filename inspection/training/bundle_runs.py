"""A bundle under export run on its labelled splits: each image decoded once for every bundle
of a version (``SplitInputs``) and run once per bundle (``BundleRuns``), many in flight.

Export scores the same images several times over: the validation split to calibrate, to choose
the mask refiner and to pick golden images, for each precision it exports. The raw outputs do
not depend on the calibration, and the model input does not depend on the precision, so each
is made once; every figure is the one an image-by-image run gives (``BundleModel.run_each``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from inspection.core.errors import BundleError
from inspection.core.images import READERS
from inspection.core.outputs import RawOutputs
from inspection.core.types import InspectionResult
from inspection.runtime.inspector import Inspector, RawImageOutputs
from inspection.runtime.model import IN_FLIGHT, BundleModel
from inspection.runtime.preprocess import model_input
from inspection.runtime.recalibration import LabelledFile, file_input
from inspection.runtime.tiled import TiledInspector, tiled_outputs


@dataclass(frozen=True)
class _Raw:
    """One image's ROI-masked, fused raw outputs: score, (h, w) map, component z-scores."""

    score: float
    map: np.ndarray
    components: dict[str, float] = field(default_factory=dict)


class SplitInputs:
    """Each split image's model input (``recalibration.file_input``: decoded, in the bundle's
    colour, aligned, at its input size), made once for all the bundles of one version: its
    precisions differ in the graph, never in what it is fed. Holds N (h, w, 3) uint8 inputs."""

    def __init__(self) -> None:
        self._inputs: dict[Path, np.ndarray] = {}
        self._feed: tuple[Any, ...] | None = None

    def of(self, model: BundleModel, paths: Sequence[Path]) -> list[np.ndarray]:
        """Each of ``paths``' input to ``model``, those not made yet decoded ``READERS`` at a
        time (decoding releases the GIL); those kept are dropped first when ``model`` is fed
        otherwise (another preprocessing, colour, alignment or ROI) than they were made for."""
        meta = model.metadata
        colour = None if meta.input_domain is None else meta.input_domain.colour
        feed = (meta.preprocessing, colour, meta.alignment, meta.roi)
        if feed != self._feed:
            self._inputs.clear()
            self._feed = feed
        missing = [path for path in dict.fromkeys(paths) if path not in self._inputs]
        if missing:
            with ThreadPoolExecutor(READERS) as pool:
                made = pool.map(partial(file_input, model), missing)
                self._inputs.update(zip(missing, made, strict=True))
        return [self._inputs[path] for path in paths]


class BundleRuns:
    """A bundle under export, compiled once: ``model`` (``reread`` after each rewrite of its
    metadata) and the ROI-masked, fused raw outputs of each model input, run once (they do not
    depend on the calibration, which is all export changes between runs). Also a ``MapSource``
    (``inspect``) for ``refine.select.choose_refiner``."""

    def __init__(self, model: BundleModel, inputs: SplitInputs | None = None) -> None:
        """``inputs``: the version's inputs shared with its other bundles (None: this one's)."""
        self.model = model
        self._inputs = inputs or SplitInputs()
        self._raw: dict[bytes, _Raw] = {}  # by the input's digest (``_key``)
        self._inspector: Inspector | None = None

    def reread(self) -> None:
        """Take the bundle's rewritten files; outputs are kept unless its global context
        changed (``BundleModel.reread``: the graph never does)."""
        before, self.model = self.model.context, self.model.reread()
        self._inspector = None
        if before is not None or self.model.context is not None:
            self._raw.clear()

    def predictor(self) -> Inspector | TiledInspector:
        """The station's predictor on ``model`` (tiled for a tiled bundle)."""
        inspector = Inspector(self.model)
        return inspector if self.model.metadata.tiling is None else TiledInspector(inspector)

    def outputs(self, samples: Sequence[LabelledFile]) -> RawOutputs:
        """Raw outputs on ``samples`` through the station's inference path (a tiled bundle's
        stitched at ``evaluation_size`` of the first image, computed each call)."""
        if not samples:
            raise BundleError("cannot run a bundle on an empty labelled split")
        if self.model.metadata.tiling is not None:
            tiled = self.predictor()
            scores, maps, _ = tiled_outputs(tiled, [s.path for s in samples])  # type: ignore[arg-type]
            return RawOutputs.of_samples(samples, scores, maps)
        done = self._run(self._inputs.of(self.model, [Path(s.path) for s in samples]))
        scores = np.asarray([raw.score for raw in done])
        return RawOutputs.of_samples(samples, scores, np.stack([raw.map for raw in done]))

    def inspect(self, image: np.ndarray) -> InspectionResult:
        """``Inspector.inspect`` of (H, W, 3) uint8 RGB ``image`` (no refiner), its model input
        run only if this bundle has not run it yet (a tiled bundle: not supported)."""
        if self.model.metadata.tiling is not None:
            raise BundleError("BundleRuns.inspect judges whole images; use predictor() when tiled")
        if self._inspector is None:
            self._inspector = Inspector(self.model)
        inspector, start = self._inspector, time.perf_counter()
        ready = inspector.prepare(image)
        (raw,) = self._run([model_input(ready.image, self.model.metadata.preprocessing)])
        outputs = RawImageOutputs(
            ready.image, raw.score, raw.map, start, components=raw.components,
            alignment=ready.alignment, input_warnings=ready.input_warnings,
        )  # fmt: skip
        return inspector.judge_raw(outputs)

    def _run(self, inputs: Sequence[np.ndarray]) -> list[_Raw]:
        """The raw outputs of each of ``inputs``, running those not run yet, ``IN_FLIGHT`` at
        a time through ``BundleModel.run_each`` (one image per request, as the station)."""
        keys = [_key(x) for x in inputs]
        new = list({k: x for k, x in zip(keys, inputs, strict=True) if k not in self._raw}.items())
        for start in range(0, len(new), IN_FLIGHT):
            chunk = new[start : start + IN_FLIGHT]
            batch = np.stack([x for _, x in chunk])
            raw = self.model.fuse(batch, self.model.run_each(batch))
            for (k, _), score, raw_map, parts in zip(
                chunk, raw.scores, raw.maps, raw.components, strict=True
            ):
                self._raw[k] = _Raw(float(score), raw_map, parts)
        return [self._raw[k] for k in keys]


def _key(model_input: np.ndarray) -> bytes:
    """A digest of one model input's shape, type and values."""
    digest = hashlib.blake2b(str((model_input.shape, model_input.dtype)).encode(), digest_size=16)
    digest.update(np.ascontiguousarray(model_input).data)
    return digest.digest()


def run_bundle(bundle_dir: str | Path, samples: Sequence[LabelledFile]) -> RawOutputs:
    """Run the exported model through the station's inference path on ``samples``."""
    return BundleRuns(BundleModel.load(bundle_dir)).outputs(samples)
