"""What INT8 quantisation keeps in FP32: the distance head and the input stem."""

from __future__ import annotations

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from inspection.training.quantize import distance_head


def _model() -> ov.Model:
    """backbone conv -> pooled features -> memory-bank MatMul -> min: anomalib's names."""
    image = ops.parameter([1, 3, 8, 8], np.float32, name="image")
    weights = ops.constant(np.ones((4, 3, 3, 3), np.float32))
    conv = ops.convolution(image, weights, [1, 1], [1, 1], [1, 1], [1, 1])
    conv.set_friendly_name("Multiply_1")  # a fused backbone conv keeps a generic name
    pool = ops.avg_pool(conv, [2, 2], [0, 0], [0, 0], [2, 2], exclude_pad=True)
    pool.set_friendly_name("__module.model.feature_pooler/aten::avg_pool2d/AvgPool")
    flat = ops.reshape(pool, ops.constant(np.array([16, 4], np.int64)), special_zero=False)
    flat.set_friendly_name("Reshape_7")  # generic name, but downstream of the head
    bank = ops.constant(np.ones((4, 5), np.float32))
    distances = ops.matmul(flat, bank, False, False)
    distances.set_friendly_name("Add_9")
    score = ops.reduce_min(distances, ops.constant(np.array([0, 1], np.int64)), keep_dims=False)
    return ov.Model([score], [image], "toy")


def test_head_is_the_pattern_match_and_everything_downstream() -> None:
    names = distance_head(_model())
    assert "__module.model.feature_pooler/aten::avg_pool2d/AvgPool" in names
    assert {"Reshape_7", "Add_9"} <= set(names)
    assert "Multiply_1" not in names and "image" not in names


def test_nncf_logs_go_to_the_root_logger_not_to_its_own_stdout_handler() -> None:
    import logging

    from inspection.training.quantize import import_nncf

    import_nncf()
    nncf_logger = logging.getLogger("nncf")
    assert nncf_logger.propagate
    assert not [h for h in nncf_logger.handlers if type(h) is logging.StreamHandler]


def _two_convs() -> ov.Model:
    """conv -> relu -> conv -> max: the overflow fix treats the first conv apart from the rest."""
    rng = np.random.default_rng(0)
    image = ops.parameter([1, 3, 16, 16], np.float32, name="image")
    layer = image
    for channels_in in (3, 8):
        weights = ops.constant(rng.normal(size=(8, channels_in, 3, 3)).astype(np.float32))
        layer = ops.relu(ops.convolution(layer, weights, [1, 1], [1, 1], [1, 1], [1, 1]))
    score = ops.reduce_max(layer, ops.constant(np.array([1, 2, 3])), False)
    score.output(0).get_tensor().set_names({"pred_score"})
    return ov.Model([score], [image], "two_convs")


def test_int8_weights_fit_seven_bits_in_every_layer() -> None:
    """7-bit weights (|w| <= 64) cannot saturate the int16 pair sums of AVX2's u8 x s8 kernels;
    NNCF's default would keep 8 bits past the first layer."""
    from inspection.training.quantize import quantize_int8

    rng = np.random.default_rng(1)
    calibration = [rng.normal(size=(3, 16, 16)).astype(np.float32) for _ in range(8)]
    model = quantize_int8(_two_convs(), calibration)  # no distance head: every layer is INT8
    weights = [n.get_data() for n in model.get_ordered_ops() if _is_int8_constant(n)]
    assert len(weights) == 2
    assert all(int(np.abs(w).max()) <= 64 for w in weights)


def _is_int8_constant(node: ov.Node) -> bool:
    return node.get_type_name() == "Constant" and node.get_element_type() == ov.Type.i8


def _branches() -> ov.Model:
    """image -> conv a -> depthwise b -> conv c, and image -> conv d: a's and d's depth is 1."""
    image = ops.parameter([1, 4, 8, 8], np.float32, name="image")

    def conv(x: ov.Node, name: str) -> ov.Node:
        node = ops.relu(
            ops.convolution(
                x, ops.constant(np.ones((4, 4, 1, 1), np.float32)), [1, 1], [0, 0], [0, 0], [1, 1]
            )
        )
        node.input_value(0).get_node().set_friendly_name(name)
        return node

    depthwise = ops.group_convolution(
        conv(image, "a"), ops.constant(np.ones((4, 1, 1, 3, 3), np.float32)), [1, 1], [1, 1],
        [1, 1], [1, 1],
    )  # fmt: skip
    depthwise.set_friendly_name("b")
    return ov.Model([conv(ops.relu(depthwise), "c"), conv(image, "d")], [image], "branches")


@pytest.mark.parametrize(
    ("depth", "expected"),
    [(0, set()), (1, {"a", "d"}), (2, {"a", "b", "d"}), (3, {"a", "b", "c", "d"})],
)
def test_input_stem_is_every_convolution_within_depth_of_the_image(
    depth: int, expected: set[str]
) -> None:
    from inspection.training.quantize import input_stem

    assert set(input_stem(_branches(), depth)) == expected


def test_kept_parts_are_described_with_why_and_leave_the_stem_in_float() -> None:
    from inspection.training.quantize import describe_kept, kept_fp32, quantize_int8

    kept = kept_fp32(_branches(), 2)
    assert kept["distance head"] == [] and set(kept["input stem"]) == {"a", "b", "d"}
    (line,) = describe_kept(kept)  # no head in the toy model: one line
    assert line.startswith("input stem: 3 nodes (") and line.endswith(
        "per-tensor INT8 there shifts good scores past the threshold"
    )
    rng = np.random.default_rng(2)
    calibration = [rng.normal(size=(4, 8, 8)).astype(np.float32) for _ in range(4)]
    model = quantize_int8(_branches(), calibration, stem_depth=2)
    int8_weights = [n for n in model.get_ordered_ops() if _is_int8_constant(n)]
    assert len(int8_weights) == 1  # conv c alone
