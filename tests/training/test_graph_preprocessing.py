"""Preprocessing in the OpenVINO graph (``training.convert.with_preprocessing``): the graph
takes the uint8 image at its input size and computes what ``runtime.preprocess.preprocess``
computed in Python, so a bundle exported with it (``Preprocessing.in_graph``) judges as one
exported before (golden parity, f32 pinned), and such older bundles still load and judge."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from inspection.core.bundle import Preprocessing, read_bundle_metadata, write_bundle_metadata
from inspection.core.images import read_image
from inspection.runtime.inspector import Inspector
from inspection.runtime.preprocess import preprocess
from inspection.training.convert import with_preprocessing
from tests.ov_precision import compile_at

PREP = Preprocessing(input_size=(24, 32), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def _identity(prep: Preprocessing) -> ov.Model:
    """A graph returning its (N, 3, h, w) float32 input: shows what the model is fed."""
    image = ops.parameter([-1, 3, *prep.input_size], np.float32)
    return ov.Model([ops.multiply(image, np.float32(1.0))], [image], "identity")


def _fed(prep: Preprocessing, image: np.ndarray) -> np.ndarray:
    compiled = compile_at(with_preprocessing(_identity(prep), prep), "f32")
    return compiled({0: image[None]})[0][0]


@pytest.mark.parametrize("color_order", ["RGB", "BGR"])
def test_the_graph_feeds_the_model_what_python_preprocessing_did(color_order: str) -> None:
    prep = dataclasses.replace(PREP, color_order=color_order)
    image = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(_fed(prep, image), preprocess(image, prep), rtol=0, atol=1e-5)


def test_an_int8_graph_gets_the_same_preprocessing() -> None:
    """Export quantises the float graph on Python-preprocessed images, then moves the
    preprocessing into the quantised graph: fed the uint8 image, it computes what it computed."""
    from inspection.training.quantize import quantize_int8

    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for _ in range(8)]
    weights = rng.normal(size=(8, 3, 3, 3)).astype(np.float32)
    image = ops.parameter([-1, 3, *PREP.input_size], np.float32)
    conv = ops.relu(ops.convolution(image, weights, [1, 1], [1, 1], [1, 1], [1, 1]))
    float_graph = ov.Model([conv], [image], "conv")
    int8 = quantize_int8(float_graph, [preprocess(i, PREP) for i in images])
    assert any(node.get_type_name() == "FakeQuantize" for node in int8.get_ordered_ops())
    before, after = compile_at(int8, "f32"), compile_at(with_preprocessing(int8, PREP), "f32")
    for shown in images[:3]:
        expected = before({0: preprocess(shown, PREP)[None]})[0]
        np.testing.assert_allclose(after({0: shown[None]})[0], expected, rtol=1e-4, atol=1e-4)


def test_a_graph_already_preprocessing_is_refused() -> None:
    prep = dataclasses.replace(PREP, in_graph=True)
    with pytest.raises(Exception, match="already preprocesses"):
        with_preprocessing(_identity(PREP), prep)


# ------------------------------------------------- bundles: before and after, f32 pinned
SCORE_TOLERANCE = 1e-4
"""Raw scores and maps of the two paths, relative to the bundle's raw score and map ranges
(the same arithmetic in another order)."""


def _pinned_copy(bundle: Path, target: Path, model: ov.Model | None = None) -> Path:
    """``bundle`` copied with f32 inference pinned; ``model``: its graph replaced by the one
    exported before preprocessing moved into the graph (``in_graph`` false)."""
    shutil.copytree(bundle, target)
    (target / "signature.json").unlink(missing_ok=True)
    meta = dataclasses.replace(read_bundle_metadata(target), inference_precision="f32")
    if model is not None:
        ov.save_model(model, target / meta.model_file, compress_to_fp16=False)
        prep = dataclasses.replace(meta.preprocessing, in_graph=False)
        meta = dataclasses.replace(meta, preprocessing=prep)
    write_bundle_metadata(target, meta)
    return target


@pytest.mark.slow
def test_a_bundle_judges_as_one_exported_before_and_those_still_load(
    trained_patchcore, fp32_bundle: Path, tmp_path: Path
) -> None:
    saved = json.loads((fp32_bundle / "metadata.json").read_text())["preprocessing"]
    assert saved["in_graph"] is True
    graph = _pinned_copy(fp32_bundle, tmp_path / "graph")
    before = _pinned_copy(fp32_bundle, tmp_path / "python", trained_patchcore.converted.model)
    new = Inspector.from_bundle(graph, golden=False)
    old = Inspector.from_bundle(before, golden=False)
    assert new.model.compiled.input(0).get_element_type() == ov.Type.u8
    assert old.model.compiled.input(0).get_element_type() == ov.Type.f32
    norm = new.metadata.normalization
    ranges = (norm.image_max - norm.image_min, norm.pixel_max - norm.pixel_min)
    paths = sorted((trained_patchcore.dataset_root / "test").rglob("*.png"))[::4][:4]
    for path in paths:
        image = read_image(path)  # 128 px: both paths resize it to the 64 px input
        small = cv2.resize(image, (64, 64), interpolation=cv2.INTER_AREA)
        for shown in (small, image):
            got, expected = new.infer_raw(shown), old.infer_raw(shown)
            assert abs(got.score - expected.score) <= SCORE_TOLERANCE * ranges[0]
            error = np.abs(got.anomaly_map - expected.anomaly_map).max()
            assert error <= SCORE_TOLERANCE * ranges[1]
            assert new.inspect(shown).verdict == old.inspect(shown).verdict
