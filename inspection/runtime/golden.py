"""Golden outputs on the station: recorded at export (``record_golden``), checked at every load.

The check runs the bundle's golden images through the compiled model as it will serve (this
CPU, pinned precision, batch of one) and compares the raw outputs with the export's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import openvino as ov

from inspection.core.bundle import BundleMetadata
from inspection.core.errors import BundleError, ImageDecodeError
from inspection.core.golden import (
    DEFAULT_TOLERANCE,
    GOLDEN_DIR,
    GoldenCheck,
    GoldenDriftError,
    GoldenOutputs,
    choose_golden,
    compare_golden,
    golden_margins,
    golden_outputs,
)
from inspection.core.images import decode_reduced, read_image
from inspection.runtime.hardware import cpu_info
from inspection.runtime.model import BundleModel
from inspection.runtime.preprocess import at_input_size, model_input

__all__ = ["GoldenDriftError", "check_golden", "record_golden"]


def executed_precision(compiled: ov.CompiledModel) -> str:
    """The inference precision OpenVINO runs ``compiled`` in (``f32``, ``bf16``, ``f16``)."""
    try:
        return compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    except (RuntimeError, AttributeError):  # a device without the property
        return ""


def executed_kernels(compiled: ov.CompiledModel) -> tuple[str, ...]:
    """The CPU kernel families of the compiled graph, e.g. ``brgemm_avx512_amx_int8``."""
    kinds = set()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "primitiveType" in info:
            kind = info["primitiveType"].astype(str)
            if kind and not kind.startswith("unknown"):
                kinds.add(kind)
    return tuple(sorted(kinds))


def run_golden(
    model: BundleModel, images: Sequence[np.ndarray], *, masked: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Golden images -> raw scores and maps, one image per inference, fused as served. Not
    ROI-masked unless ``masked``: the ROI may change after export; the check is about the
    graph's numerics on this CPU."""
    scores, maps = [], []
    for image in images:
        batch = model_input(image, model.metadata.preprocessing)[None]
        raw = model.fuse(batch, model.run(batch), masked=masked)
        scores.append(raw.scores[0])
        maps.append(raw.maps[0])
    return np.asarray(scores, dtype=np.float32), np.stack(maps).astype(np.float32)


def golden_images(model: BundleModel) -> list[np.ndarray]:
    golden = model.metadata.golden
    if golden is None:
        return []
    images = []
    for file in golden.files:
        try:
            images.append(decode_reduced(model.verified.file(file), name=file).image)
        except ImageDecodeError as exc:
            raise BundleError(f"{model.bundle_dir}: unreadable golden image: {exc}") from exc
    return images


def check_golden(model: BundleModel) -> GoldenCheck | None:
    """Run the golden images on this station and compare; None for a bundle without them."""
    golden = model.metadata.golden
    if golden is None:
        return None
    scores, maps = run_golden(model, golden_images(model))
    return compare_golden(
        golden,
        scores,
        maps,
        bundle=f"{model.metadata.product}/{model.metadata.bundle_id}",
        precision=executed_precision(model.compiled),
        kernels=executed_kernels(model.compiled),
    )


def record_golden(
    bundle_dir: str | Path,
    metadata: BundleMetadata,
    sources: Sequence[Path],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    model: BundleModel | None = None,
    served: Sequence[float] | np.ndarray | None = None,
) -> BundleMetadata:
    """Write golden PNGs chosen among ``sources`` (``core.golden.choose_golden``) into the
    bundle and return ``metadata`` with its outputs on them; the caller re-writes
    ``metadata.json`` so the images are checksummed (and signed) with the bundle. ``model``: the
    bundle already compiled (else loaded here); ``served``: the sources' ROI-masked fused raw
    scores when already computed (else each is run here)."""
    bundle_dir = Path(bundle_dir)
    model = model or BundleModel.load(bundle_dir)
    prep = metadata.preprocessing

    def candidate(path: Path) -> np.ndarray:
        image = read_image(path, bits=prep.source_bits, value_range=prep.source_range)
        return at_input_size(model.align(image)[0], prep)

    if served is None:
        served = run_golden(model, [candidate(path) for path in sources], masked=True)[0]
    chosen = choose_golden(golden_margins(np.asarray(served), metadata.normalization))
    (bundle_dir / GOLDEN_DIR).mkdir(exist_ok=True)
    files, images = [], []
    for index, source in enumerate(chosen):
        file = f"{GOLDEN_DIR}/{index:02d}.png"
        rgb = cv2.cvtColor(candidate(sources[source]), cv2.COLOR_RGB2BGR)
        if not cv2.imwrite(str(bundle_dir / file), rgb):
            raise BundleError(f"{bundle_dir}: cannot write golden image {file}")
        files.append(file)
        images.append(read_image(bundle_dir / file))  # exactly what a station will read
    scores, maps = run_golden(model, images)
    golden: GoldenOutputs = golden_outputs(
        files,
        scores,
        maps,
        metadata.normalization,
        served=run_golden(model, images, masked=True)[0],
        tolerance=tolerance,
        precision=executed_precision(model.compiled),
        recorded_on=cpu_info().summary(),
    )
    return replace(metadata, golden=golden)


def golden_sources(paths_labels: Sequence[tuple[Path, int]], count: int) -> list[Path]:
    """Up to ``count`` paths alternating good and defective: both sides of the threshold."""
    good = sorted(p for p, label in paths_labels if label == 0)
    bad = sorted(p for p, label in paths_labels if label != 0)
    chosen: list[Path] = []
    while (good or bad) and len(chosen) < count:
        for side in (good, bad):
            if side and len(chosen) < count:
                chosen.append(side.pop(0))
    return chosen
