"""Load-time graph rewrites keep the bundle's outputs: the separable anomaly-map blur."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov

from inspection.core.bundle import read_bundle_metadata
from inspection.runtime.graph import separate_blur_kernels
from inspection.runtime.inspector import Inspector


def _big_kernels(model: ov.Model) -> list[list[int]]:
    shapes = []
    for node in model.get_ordered_ops():
        if node.get_type_name() == "Convolution":
            shape = list(node.input_value(1).get_partial_shape().to_shape())
            if max(shape[2:]) >= 7:
                shapes.append(shape)
    return shapes


def test_blur_becomes_two_1d_convolutions(fp32_bundle: Path) -> None:
    meta = read_bundle_metadata(fp32_bundle)
    model = ov.Core().read_model(fp32_bundle / meta.model_file)
    (kernel,) = _big_kernels(model)
    size = kernel[2]
    notes = separate_blur_kernels(model)
    assert len(notes) == 1 and f"{size}x{size} -> 1x{size} + {size}x1" in notes[0]
    assert sorted(_big_kernels(model)) == [[1, 1, 1, size], [1, 1, size, 1]]
    assert separate_blur_kernels(model) == []  # nothing left to rewrite


def test_rewritten_graph_gives_the_same_scores_and_maps(fp32_bundle: Path) -> None:
    exported = Inspector.from_bundle(fp32_bundle, optimize=False)
    rewritten = Inspector.from_bundle(fp32_bundle)
    height, width = exported.input_size
    batch = np.random.default_rng(0).normal(size=(2, 3, height, width)).astype(np.float32)
    scores, maps = exported.infer_raw(batch)
    fast_scores, fast_maps = rewritten.infer_raw(batch)
    np.testing.assert_allclose(fast_scores, scores, rtol=1e-5)
    np.testing.assert_allclose(fast_maps, maps, rtol=1e-4, atol=1e-4 * float(np.abs(maps).max()))
