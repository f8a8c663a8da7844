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
