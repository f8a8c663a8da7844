"""INT8 post-training quantisation of an OpenVINO model with NNCF.

Only the backbone is quantised: the distance head stays FP32 through an NNCF ``IgnoredScope``
(in INT8 bank distances collapse), and so does the input stem (``input_stem``: per-tensor INT8
there shifts good scores past the threshold; ``reports/runtime/int8.md``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from types import ModuleType

import numpy as np
import openvino as ov

log = logging.getLogger(__name__)


def import_nncf() -> ModuleType:
    """``nncf``, its records handed to the root logger (its own stdout handler, installed at
    import, would bypass the CLI's log file and fill the screen)."""
    # With a CUDA toolkit but no GPU, torch warns "No CUDA runtime is found" through its own
    # screen handler when nncf loads torch's extension helpers: noise on a CPU machine.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    # deferred: nncf pulls torch (2 s), only to quantize
    import nncf

    nncf_logger = logging.getLogger("nncf")
    for handler in [h for h in nncf_logger.handlers if type(h) is logging.StreamHandler]:
        nncf_logger.removeHandler(handler)
    nncf_logger.propagate = True
    return nncf


DISTANCE_HEAD_PATTERNS: tuple[str, ...] = (
    r"^__module\.model\.feature_pooler/",  # PatchCore: pooled backbone features
    r"^__module\.model/aten::",  # PatchCore: embedding, memory-bank distances, kNN, top-k
    r"^__module\.model\.anomaly_map_generator",  # both: map assembly and blur
)
"""Names (``openvino.convert_model`` friendly names of anomalib models) where the head starts;
every node downstream of a match stays in FP32."""


def distance_head(model: ov.Model, patterns: Sequence[str] = DISTANCE_HEAD_PATTERNS) -> list[str]:
    """Friendly names of the nodes matching ``patterns`` and every node downstream of them."""
    compiled = [re.compile(p) for p in patterns]
    seeds = [
        op
        for op in model.get_ordered_ops()
        if any(p.search(op.get_friendly_name()) for p in compiled)
    ]
    seen: dict[str, object] = {}
    stack = list(seeds)
    while stack:
        op = stack.pop()
        name = op.get_friendly_name()
        if name in seen:
            continue
        seen[name] = op
        for output in op.outputs():
            stack.extend(target.get_node() for target in output.get_target_inputs())
    return sorted(seen)


STEM_DEPTH = 2
"""Convolutions kept in FP32 from the image on: those with at most this many convolutions
(themselves included) on any path from the input (EfficientNet-lite: the stem and the first
depthwise convolution; ResNet: ``conv1`` and the first block's first convolution)."""
CONVOLUTIONS = ("Convolution", "GroupConvolution")


def input_stem(model: ov.Model, depth: int = STEM_DEPTH) -> list[str]:
    """Friendly names of the convolutions within ``depth`` convolutions of the input, in order."""
    reached: dict[str, int] = {}  # node name -> most convolutions on a path from the input
    stem = []
    for op in model.get_ordered_ops():
        before = [reached.get(i.get_source_output().get_node().get_friendly_name(), 0)
                  for i in op.inputs()]  # fmt: skip
        count = max(before, default=0) + (op.get_type_name() in CONVOLUTIONS)
        reached[op.get_friendly_name()] = count
        if op.get_type_name() in CONVOLUTIONS and count <= depth:
            stem.append(op.get_friendly_name())
    return stem


KEPT_WHY = {
    "distance head": "INT8 bank distances collapse",
    "input stem": "per-tensor INT8 there shifts good scores past the threshold",
}
"""Why each part of ``kept_fp32`` stays in FP32 (recorded in the bundle)."""


def kept_fp32(model: ov.Model, stem_depth: int = STEM_DEPTH) -> dict[str, list[str]]:
    """Node names INT8 quantisation leaves in FP32: ``distance_head`` and, apart from it, the
    ``input_stem`` of ``stem_depth`` (0: none), by the part's name in ``KEPT_WHY``."""
    head = distance_head(model)
    if not head:
        log.warning(
            "no distance-head node matches %s: quantising the whole graph", DISTANCE_HEAD_PATTERNS
        )
    stem = [name for name in input_stem(model, stem_depth) if name not in set(head)]
    return {"distance head": head, "input stem": stem}


def describe_kept(kept: dict[str, list[str]]) -> tuple[str, ...]:
    """One line per non-empty part of ``kept_fp32``: what, how many nodes, why."""
    return tuple(
        f"{part}: {len(names)} nodes"
        + (f" ({', '.join(names)})" if len(names) <= 4 else "")
        + f": {KEPT_WHY[part]}"
        for part, names in kept.items()
        if names
    )


def quantize_int8(
    model: ov.Model,
    calibration: Sequence[np.ndarray],
    *,
    stem_depth: int = 0,
) -> ov.Model:
    """Quantise ``model`` to INT8 on ``calibration`` ((3, h, w) float32 good images), the distance
    head and ``input_stem`` kept FP32 (an NNCF ``IgnoredScope``). Weights are 7-bit everywhere,
    so AVX2 CPUs (u8 x s8 pairs saturate int16 with 8-bit weights) compute what VNNI and AMX do."""
    nncf = import_nncf()

    if not calibration:
        raise ValueError("INT8 quantisation needs at least one calibration image")
    calibration_set = nncf.Dataset(list(calibration), lambda item: item[None])
    subset = len(calibration)
    kept = [name for part in kept_fp32(model, stem_depth).values() for name in part]
    scope = nncf.IgnoredScope(names=kept, validate=False)
    advanced = nncf.AdvancedQuantizationParameters(overflow_fix=nncf.OverflowFix.ENABLE)
    log.info("quantising to INT8 with %d calibration images", subset)
    return nncf.quantize(
        model, calibration_set, subset_size=subset, ignored_scope=scope,
        advanced_parameters=advanced,
    )  # fmt: skip
