"""The distance head that INT8 quantisation keeps in FP32."""

from __future__ import annotations

import numpy as np
import openvino as ov
import openvino.opset13 as ops

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
