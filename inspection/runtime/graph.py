"""Load-time rewrites of a bundle's OpenVINO graph that keep its outputs and cut its cost.

- ``linearise_map_heads``: anomalib's map head (upsample, reflect pad, K x K Gaussian blur) is
  linear and separable, so it becomes ``A @ m @ B.T`` with A (H, h) and B (W, w) read off the
  exported head by probing it: two small matmuls instead of a 256 x 256 convolution.
- ``fold_patch_distances``: ``sqrt(max(|x|^2 - 2 x.y + |y|^2, 0))`` over the (patches x bank)
  matrix, then its minimum: the sqrt, clamp and ``|x|^2`` are monotone per row, so they move
  after the minimum and the matrix step becomes one GEMM with the bank norms as bias.
- ``separate_blur_kernels``: a K x K Gaussian becomes 1 x K and K x 1 convolutions.

Each matches only its exact pattern, so every bundle (old or new, any precision) still loads.
``project_patch_distances`` changes outputs (within a measured tolerance): it runs at export
when a product sets ``knn_rank``, so calibration, the gate and golden outputs see the served
graph. Torch-free.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

import numpy as np
import openvino as ov
import openvino.opset13 as ops
from threadpoolctl import threadpool_limits  # a scikit-learn dependency

log = logging.getLogger(__name__)

MIN_KERNEL = 7
"""Smaller kernels (the backbone's 3x3/5x5) gain nothing from splitting."""
RANK1_TOLERANCE = 2e-3
"""Largest second singular value, relative to the first, of a kernel treated as separable
(float32 Gaussians are ~1e-8; INT8-quantised ones ~1e-3)."""


def optimize_graph(model: ov.Model) -> list[str]:
    """Apply every output-preserving rewrite in place; returns what was rewritten."""
    return [
        *linearise_map_heads(model),
        *fold_patch_distances(model),
        *separate_blur_kernels(model),
    ]


# ---------------------------------------------------------------- map head
LINEAR_HEAD_OPS = ("Interpolate", "Pad", "Convolution", "Reshape")
"""Single-channel spatial ops a map head may chain (each linear in its data input)."""
MIN_UPSAMPLING = 16
"""The head must grow the map at least this many times in area: the matmuls win only when
the input map is small (PatchCore: 32 x 32 -> 256 x 256, 64 x)."""
PROBE_TOLERANCE = 1e-4
"""Largest error of ``A @ m @ B.T`` on a random map, relative to the head's own output."""


def linearise_map_heads(model: ov.Model) -> list[str]:
    """Replace every separable linear map head (a chain of single-channel upsample, pad,
    convolution and reshape ops; PatchCore has one before its output, STFPM one per layer
    before their product) by two matmuls, in place."""
    notes = []
    for last in _chain_ends(model):
        chain = _chain_ending_at(last)
        if not chain:
            continue
        factors = _probe_head(model, last.get_friendly_name(), _map_shape(chain[0].input_value(0)))
        if factors is None:
            continue
        rows, cols = factors
        data = chain[0].input_value(0)
        tall = ops.matmul(ops.constant(rows), data, transpose_a=False, transpose_b=False)
        out = ops.matmul(tall, ops.constant(np.ascontiguousarray(cols.T)), False, False)
        tall.set_friendly_name(f"{last.get_friendly_name()}/rows")
        out.set_friendly_name(f"{last.get_friendly_name()}/linear")
        last.output(0).replace(out.output(0))
        kinds = " + ".join(node.get_type_name() for node in chain)
        notes.append(
            f"map head {kinds} -> A ({rows.shape[0]}x{rows.shape[1]}) @ m @ B.T "
            f"({cols.shape[1]}x{cols.shape[0]})"
        )
    if notes:
        model.validate_nodes_and_infer_types()
    return notes


def _is_map_op(node: ov.Node) -> bool:
    return node.get_type_name() in LINEAR_HEAD_OPS and _single_channel(node)


def _chain_ends(model: ov.Model) -> list[ov.Node]:
    """Single-channel linear map ops whose result leaves the chain: not the only input of
    another such op. Names must be unique, since a probe finds its chain again by name."""
    ops_in_order = model.get_ordered_ops()
    names = Counter(node.get_friendly_name() for node in ops_in_order)
    ends = []
    for node in ops_in_order:
        if not _is_map_op(node) or names[node.get_friendly_name()] != 1:
            continue
        consumers = [target.get_node() for target in node.output(0).get_target_inputs()]
        if len(consumers) != 1 or not _is_map_op(consumers[0]):
            ends.append(node)
    return ends


def _chain_ending_at(last: ov.Node) -> list[ov.Node]:
    """The longest chain of single-channel linear spatial ops ending at ``last``, first op
    first; empty unless it upsamples enough to be worth two matmuls."""
    chain: list[ov.Node] = []
    node = last
    while _is_map_op(node):
        if chain and len(node.output(0).get_target_inputs()) != 1:
            break  # an intermediate map used elsewhere must stay
        chain.append(node)
        node = node.input_value(0).get_node()
    chain.reverse()
    if not chain or not any(n.get_type_name() == "Interpolate" for n in chain):
        return []
    (_, _, h, w), (_, _, big_h, big_w) = (
        _map_shape(chain[0].input_value(0)),
        _map_shape(chain[-1].output(0)),
    )
    return chain if h * w * MIN_UPSAMPLING <= big_h * big_w else []


def _single_channel(node: ov.Node) -> bool:
    """(N, 1, h, w) in and out with static h, w (and, for a convolution, a 1 x 1 kernel
    shape in its channel dimensions)."""
    shapes = [_map_shape(node.input_value(0)), _map_shape(node.output(0))]
    if any(shape is None for shape in shapes):
        return False
    if node.get_type_name() == "Convolution":
        weights = node.input_value(1).get_partial_shape()
        return weights.is_static and list(weights.to_shape())[:2] == [1, 1]
    return True


def _map_shape(port: ov.Output) -> tuple[int, int, int, int] | None:
    """(N or -1, 1, h, w) of a single-channel map port, None for anything else."""
    shape = port.get_partial_shape()
    if shape.rank.is_dynamic or shape.rank.get_length() != 4:
        return None
    dims = [d.get_length() if d.is_static else -1 for d in shape]
    if dims[1] != 1 or min(dims[2:]) < 1:
        return None
    return dims[0], 1, dims[2], dims[3]


def _probe_head(
    model: ov.Model, last_name: str, start: tuple[int, int, int, int] | None
) -> tuple[np.ndarray, np.ndarray] | None:
    """Factors (A (H, h), B (W, w)) with head(m) = A @ m @ B.T, read off a copy of the head by
    feeding it maps of ones along one row or column; None unless a random map confirms it."""
    copy = model.clone()
    separate_blur_kernels(copy)  # same outputs, far cheaper probes
    last = [n for n in copy.get_ordered_ops() if n.get_friendly_name() == last_name]
    chain = _chain_ending_at(last[0]) if len(last) == 1 else []
    if not chain or _map_shape(chain[0].input_value(0)) != start:
        return None
    _, _, h, w = _map_shape(chain[0].input_value(0))
    probe = ops.parameter([1, 1, h, w], np.float32)
    chain[0].input(0).replace_source_output(probe.output(0))
    head = ov.Model([chain[-1].output(0)], [probe, *copy.get_parameters()], "map_head")
    compiled = ov.Core().compile_model(head, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    # the model's own inputs only feed shape computations of the head: any values do
    others = {i + 1: _zeros(p) for i, p in enumerate(copy.get_parameters())}

    def run(m: np.ndarray) -> np.ndarray:
        out = compiled({0: m.reshape(1, 1, h, w).astype(np.float32), **others})[0]
        return np.asarray(out, dtype=np.float64)[0, 0]

    ones = run(np.ones((h, w)))
    row, col = np.unravel_index(int(np.argmax(np.abs(ones))), ones.shape)
    if ones[row, col] == 0:
        return None
    rows = np.stack([run(np.eye(h)[:, [i]] * np.ones((1, w)))[:, col] for i in range(h)], 1)
    cols = np.stack([run(np.ones((h, 1)) * np.eye(w)[[j]])[row, :] for j in range(w)], 1)
    cols = cols / ones[row, col]
    check = np.random.default_rng(0).uniform(0.0, 50.0, size=(h, w))
    expected = run(check)
    error = np.abs(rows @ check @ cols.T - expected).max()
    if error > PROBE_TOLERANCE * max(1.0, float(np.abs(expected).max())):
        log.debug("map head is not separable-linear (error %.2e); left as exported", error)
        return None
    return rows.astype(np.float32), cols.astype(np.float32)


def _zeros(parameter: ov.Node) -> np.ndarray:
    dims = [d.get_length() if d.is_static else 1 for d in parameter.get_partial_shape()]
    return np.zeros(dims, dtype=parameter.get_element_type().to_dtype())


# --------------------------------------------------------- patch distances
def fold_patch_distances(model: ov.Model) -> list[str]:
    """Move the square root, clamp and query norm of every nearest-bank-row distance after
    its minimum, in place (see the module docstring)."""
    return _rewrite_each(model, "Sqrt", _fold_distance)


def _rewrite_each(
    model: ov.Model, kind: str, rewrite: Callable[[ov.Node], str | None]
) -> list[str]:
    """``rewrite`` every ``kind`` node in graph order; the notes of those it changed."""
    ops_of_kind = [node for node in model.get_ordered_ops() if node.get_type_name() == kind]
    notes = [note for node in ops_of_kind if (note := rewrite(node))]
    if notes:
        model.validate_nodes_and_infer_types()
    return notes


def _fold_distance(sqrt: ov.Node) -> str | None:
    """``sqrt(max((x @ y.T) * c + |x|^2 + |y|^2, 0))`` whose only consumers take the minimum
    over the bank -> ``sqrt(max(min(x @ (c y).T + |y|^2) + |x|^2, 0))``."""
    consumers = [target.get_node() for target in sqrt.output(0).get_target_inputs()]
    rank = sqrt.get_output_partial_shape(0).rank
    if (
        not consumers
        or rank.is_dynamic
        or not all(_is_min_over_last(node, rank.get_length()) for node in consumers)
    ):
        return None
    clamp = sqrt.input_value(0).get_node()
    if clamp.get_type_name() != "Maximum" or not _constant_equals(clamp.input_value(1), 0.0):
        return None
    matched = _match_squared_distance(clamp.input_value(0).get_node())
    if matched is None:
        return None
    patches, patch_norms, bank, scale, bank_norms = matched
    name = sqrt.get_friendly_name()
    gemm = ops.matmul(patches, ops.constant((bank * scale).astype(np.float32)), False, True)
    scores = ops.add(gemm, ops.constant(bank_norms.reshape(1, -1).astype(np.float32)))
    nearest = ops.topk(scores, np.int64(1), axis=-1, mode="min", sort="none")
    shifted = ops.add(nearest.output(0), patch_norms)
    clamped = ops.maximum(shifted, ops.constant(np.float32(0.0)))
    best = ops.sqrt(clamped)
    for node, step in ((gemm, "gemm"), (scores, "bias"), (nearest, "min"), (shifted, "norm")):
        node.set_friendly_name(f"{name}/{step}")
    clamped.set_friendly_name(f"{name}/clamp")
    best.set_friendly_name(f"{name}/after_min")
    for node in consumers:
        _replace_min(node, best.output(0), nearest.output(1))
    return (
        f"patch distances to {bank.shape[0]} bank rows: one GEMM + bias, "
        f"sqrt/clamp/norm after the minimum ({len(consumers)} min consumers)"
    )


def _is_min_over_last(node: ov.Node, rank: int) -> bool:
    """A ReduceMin or a k=1 TopK(min) over the last axis."""
    kind = node.get_type_name()
    if kind == "ReduceMin":
        axes = _fold_constant(node.input_value(1).get_node())
        return axes is not None and sorted(int(a) % rank for a in axes.reshape(-1)) == [rank - 1]
    if kind == "TopK":
        attrs = node.get_attributes()
        k = _fold_constant(node.input_value(1).get_node())
        return (
            attrs["mode"] == "min"
            and int(attrs["axis"]) % rank == rank - 1
            and k is not None
            and int(k.reshape(-1)[0]) == 1
        )
    return False


def _replace_min(node: ov.Node, best: ov.Output, index: ov.Output) -> None:
    if node.get_type_name() == "ReduceMin":
        values = best if node.get_attributes()["keep_dims"] else ops.squeeze(best, [-1]).output(0)
        node.output(0).replace(values)
        return
    node.output(0).replace(best)
    if node.get_output_size() > 1 and node.output(1).get_target_inputs():
        wanted = node.get_output_element_type(1)
        node.output(1).replace(ops.convert(index, wanted).output(0))


def _match_squared_distance(
    node: ov.Node,
) -> tuple[ov.Output, ov.Output, np.ndarray, float, np.ndarray] | None:
    """(patches (P, D), patch norms (P, 1), bank (M, D), scale c, bank norms (M,)) of
    ``(patches @ bank.T) * c + |patches|^2 + bank norms`` (additions in any order)."""
    terms = _add_terms(node)
    constants = [_fold_constant(t.get_node()) for t in terms]
    bank_norms = [c for c in constants if c is not None]
    others = [t for t, c in zip(terms, constants, strict=True) if c is None]
    if len(bank_norms) != 1 or len(others) != 2:
        return None
    products = [t for t in others if t.get_node().get_type_name() == "Multiply"]
    norms = [t for t in others if t.get_node().get_type_name() == "ReduceSum"]
    if len(products) != 1 or len(norms) != 1:
        return None
    product = _scaled_matmul(products[0].get_node())
    if product is None:
        return None
    patches, bank, scale = product
    if not _is_squared_norm(norms[0].get_node(), patches):
        return None
    if bank_norms[0].size != bank.shape[0]:
        return None
    return patches, norms[0], bank, scale, bank_norms[0].reshape(-1)


def _add_terms(node: ov.Node) -> list[ov.Output]:
    """The summands of a tree of Add nodes (each Add used only inside the tree)."""
    terms = []
    for port in node.inputs():
        source = port.get_source_output()
        inner = source.get_node()
        if inner.get_type_name() == "Add" and len(source.get_target_inputs()) == 1:
            terms += _add_terms(inner)
        else:
            terms.append(source)
    return terms if node.get_type_name() == "Add" else []


def _scaled_matmul(node: ov.Node) -> tuple[ov.Output, np.ndarray, float] | None:
    """(patches, bank (M, D), c) of ``(patches @ bank.T) * c`` with constant bank and scalar c."""
    for side in (0, 1):
        matmul = node.input_value(side).get_node()
        scale = _fold_constant(node.input_value(1 - side).get_node())
        if matmul.get_type_name() != "MatMul" or scale is None or scale.size != 1:
            continue
        attrs = matmul.get_attributes()
        bank = _fold_constant(matmul.input_value(1).get_node())
        if attrs["transpose_a"] or bank is None or bank.ndim != 2:
            return None
        bank = bank if attrs["transpose_b"] else bank.T
        return matmul.input_value(0), bank, float(scale.reshape(-1)[0])
    return None


def _is_squared_norm(node: ov.Node, patches: ov.Output) -> bool:
    """``ReduceSum(Power(patches, 2), last axis, keep_dims)``."""
    power = node.input_value(0).get_node()
    if power.get_type_name() != "Power":
        return False
    exponent = _fold_constant(power.input_value(1).get_node())
    return (
        exponent is not None
        and exponent.size == 1
        and float(exponent.reshape(-1)[0]) == 2.0
        and power.input_value(0) == patches
        and node.get_attributes()["keep_dims"]
        and _constant_equals(
            node.input_value(1), -1, modulo=patches.get_partial_shape().rank.get_length()
        )
    )


def _constant_equals(port: ov.Output, value: float, modulo: int | None = None) -> bool:
    """``port`` is a constant whose every element equals ``value`` (axes: modulo the rank)."""
    data = _fold_constant(port.get_node())
    if data is None or data.size == 0:
        return False
    if modulo is not None:
        return bool(np.all(data.astype(np.int64) % modulo == int(value) % modulo))
    return bool(np.all(data == value))


# ------------------------------------------------------------ blur kernels
def separate_blur_kernels(model: ov.Model) -> list[str]:
    """Replace every separable single-channel K x K convolution by two 1-D ones, in place."""
    notes = _rewrite_each(model, "Convolution", _separate)
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
    row_kernel = ops.constant(row.reshape(1, 1, 1, width))
    horizontal = ops.convolution(
        node.input_value(0), row_kernel, [1, 1], [0, begin[1]], [0, end[1]], [1, 1]
    )
    column_kernel = ops.constant(column.reshape(1, 1, height, 1))
    vertical = ops.convolution(
        horizontal, column_kernel, [1, 1], [begin[0], 0], [end[0], 0], [1, 1]
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


# ------------------------------------------------------- low-rank distances
def project_patch_distances(model: ov.Model, rank: int) -> list[str]:
    """Put every folded nearest-bank-row GEMM ``x @ W.T`` (``fold_patch_distances``; W: M x D)
    of a bank wider than ``rank`` on its top-``rank`` principal directions, in place:
    ``(x @ V) @ C.T + x . mean(W)`` with V (D, k), C = (W - mean) @ V, so D x k + k x M
    instead of D x M multiply-adds per patch. Changes outputs: export-time only."""
    if rank < 1:
        raise ValueError(f"rank must be at least 1, got {rank}")
    return _rewrite_each(model, "TopK", lambda node: _project(node, rank))


def _project(nearest: ov.Node, rank: int) -> str | None:
    """``TopK_min(x @ W.T + b)`` -> ``TopK_min((x @ V) @ C.T + b) + x @ mean(W)``."""
    axes = nearest.get_output_partial_shape(0).rank.get_length()
    scores = nearest.input_value(0).get_node()
    if not _is_min_over_last(nearest, axes) or scores.get_type_name() != "Add":
        return None
    sides = [scores.input_value(i) for i in (0, 1)]
    gemms = [s for s in sides if s.get_node().get_type_name() == "MatMul"]
    if len(gemms) != 1 or len(gemms[0].get_target_inputs()) != 1:
        return None
    gemm = gemms[0].get_node()
    attrs = gemm.get_attributes()
    weights = _fold_constant(gemm.input_value(1).get_node())
    if attrs["transpose_a"] or not attrs["transpose_b"] or weights is None or weights.ndim != 2:
        return None
    rows, dims = weights.shape
    if dims <= rank or rows <= rank:
        return None
    mean = weights.astype(np.float64).mean(0)
    with threadpool_limits(limits=1, user_api="blas"):  # OpenBLAS's threaded SVD can stall
        _, _, vt = np.linalg.svd(weights.astype(np.float64) - mean, full_matrices=False)
    directions = vt[:rank].T  # (D, k)
    coords = (weights.astype(np.float64) - mean) @ directions  # (M, k)
    patches = gemm.input_value(0)
    name = gemm.get_friendly_name()
    projected = ops.matmul(patches, ops.constant(directions.astype(np.float32)), False, False)
    low = ops.matmul(projected, ops.constant(coords.astype(np.float32)), False, True)
    offset = ops.matmul(
        patches, ops.constant(mean.reshape(dims, 1).astype(np.float32)), False, False
    )
    projected.set_friendly_name(f"{name}/project")
    low.set_friendly_name(f"{name}/low_rank")
    offset.set_friendly_name(f"{name}/mean")
    gemm.output(0).replace(low.output(0))
    values = list(nearest.output(0).get_target_inputs())
    shifted = ops.add(nearest.output(0), offset)
    shifted.set_friendly_name(f"{nearest.get_friendly_name()}/plus_mean")
    for target in values:
        target.replace_source_output(shifted.output(0))
    return (
        f"patch distances to {rows} bank rows: {dims} -> {rank} dims "
        f"({rows * dims} -> {dims * rank + rows * rank} multiply-adds per patch)"
    )
