"""Load-time rewrites of a bundle's OpenVINO graph that keep its outputs and cut its cost.

anomalib smooths PatchCore/STFPM anomaly maps with a Gaussian blur exported as one dense
K x K convolution (K = 33 for sigma 4) on the full-resolution map: ~2.3 GFLOP/s-seconds of
work, a quarter of PatchCore's inference time at 256 px. A Gaussian kernel is separable,
so the same result comes from a 1 x K and a K x 1 convolution (2K instead of K^2 taps).

    model = core.read_model(bundle_dir / "model.xml")
    notes = separate_blur_kernels(model)     # ["blur 33x33 -> 1x33 + 33x1 (...)"]

Only exactly separable (rank-1) single-channel kernels are rewritten; anything else is left
as exported. Torch-free.
"""

from __future__ import annotations

import logging

import numpy as np
import openvino as ov
import openvino.opset13 as ops

log = logging.getLogger(__name__)

MIN_KERNEL = 7
"""Smaller kernels (the backbone's 3x3/5x5) gain nothing from splitting."""
RANK1_TOLERANCE = 2e-3
"""Largest second singular value, relative to the first, of a kernel treated as separable
(float32 Gaussians are ~1e-8; INT8-quantised ones ~1e-3)."""


def separate_blur_kernels(model: ov.Model) -> list[str]:
    """Replace every separable single-channel K x K convolution by two 1-D ones, in place."""
    notes = []
    for node in model.get_ordered_ops():
        if node.get_type_name() != "Convolution":
            continue
        note = _separate(node)
        if note:
            notes.append(note)
    if notes:
        model.validate_nodes_and_infer_types()
        for note in notes:
            log.debug("graph rewrite: %s", note)
    return notes


def _separate(node: ov.Node) -> str | None:
    attrs = node.get_attributes()
    if list(attrs["strides"]) != [1, 1] or list(attrs["dilations"]) != [1, 1]:
        return None
    if attrs.get("auto_pad", "explicit") not in ("explicit", "notset"):
        return None
    kernel = _fold_constant(node.input_value(1).get_node())
    if kernel is None or kernel.ndim != 4 or kernel.shape[:2] != (1, 1):
        return None
    height, width = kernel.shape[2:]
    if min(height, width) < MIN_KERNEL:
        return None
    u, s, vt = np.linalg.svd(kernel[0, 0].astype(np.float64))
    if s[0] <= 0 or s[1] > RANK1_TOLERANCE * s[0]:
        return None
    sign = -1.0 if u[:, 0].sum() < 0 else 1.0  # keep both factors positive for a Gaussian
    column = (sign * u[:, 0] * np.sqrt(s[0])).astype(np.float32)
    row = (sign * vt[0] * np.sqrt(s[0])).astype(np.float32)
    begin, end = list(attrs["pads_begin"]), list(attrs["pads_end"])
    horizontal = ops.convolution(
        node.input_value(0),
        ops.constant(row.reshape(1, 1, 1, width)),
        strides=[1, 1],
        pads_begin=[0, begin[1]],
        pads_end=[0, end[1]],
        dilations=[1, 1],
    )
    vertical = ops.convolution(
        horizontal,
        ops.constant(column.reshape(1, 1, height, 1)),
        strides=[1, 1],
        pads_begin=[begin[0], 0],
        pads_end=[end[0], 0],
        dilations=[1, 1],
    )
    horizontal.set_friendly_name(f"{node.get_friendly_name()}/row")
    vertical.set_friendly_name(node.get_friendly_name())
    node.output(0).replace(vertical.output(0))
    return (
        f"{node.get_friendly_name()}: {height}x{width} -> 1x{width} + {height}x1 "
        f"(rank-1 residual {s[1] / s[0]:.1e})"
    )


def _fold_constant(node: ov.Node) -> np.ndarray | None:
    """Value of a weight subgraph made of Constant, Convert, Multiply and Subtract nodes
    (FP16 weights are Convert(Constant); INT8 ones (Constant - zero point) x scale)."""
    kind = node.get_type_name()
    if kind == "Constant":
        return np.asarray(node.get_data(), dtype=np.float32)
    if kind == "Convert":
        return _fold_constant(node.input_value(0).get_node())
    if kind in ("Multiply", "Subtract"):
        left = _fold_constant(node.input_value(0).get_node())
        right = _fold_constant(node.input_value(1).get_node())
        if left is None or right is None:
            return None
        return left * right if kind == "Multiply" else left - right
    return None
