"""Load-time graph rewrites keep the bundle's outputs: the map head as two matmuls, the
nearest-neighbour minimum before the square root, the separable anomaly-map blur."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from inspection.core.bundle import read_bundle_metadata
from inspection.runtime.graph import (
    fold_patch_distances,
    linearise_map_heads,
    optimize_graph,
    project_patch_distances,
    separate_blur_kernels,
)
from inspection.runtime.inspector import Inspector
from inspection.runtime.preprocess import model_batch
from tests.conftest import TINY_PATCHCORE
from tests.ov_precision import TOLERANCES, compile_at


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


def _images(inspector: Inspector, seed: int) -> np.ndarray:
    """Two random-noise images as the bundle's graph takes them (``model_batch``: uint8 NHWC
    when the graph preprocesses)."""
    height, width = inspector.metadata.preprocessing.input_size
    noise = np.random.default_rng(seed).integers(0, 256, (2, height, width, 3), dtype=np.uint8)
    return model_batch(list(noise), inspector.metadata.preprocessing)


def test_rewritten_graph_gives_the_same_scores_and_maps(fp32_bundle: Path) -> None:
    exported = Inspector.from_bundle(fp32_bundle, optimize=False)
    rewritten = Inspector.from_bundle(fp32_bundle)
    batch = _images(exported, seed=0)
    exported_raw, fast_raw = exported.model.infer(batch), rewritten.model.infer(batch)
    scores, maps = exported_raw.scores, exported_raw.maps
    fast_scores, fast_maps = fast_raw.scores, fast_raw.maps
    np.testing.assert_allclose(fast_scores, scores, rtol=1e-5)
    np.testing.assert_allclose(fast_maps, maps, rtol=1e-4, atol=1e-4 * float(np.abs(maps).max()))


def test_optimize_graph_linearises_the_map_head_and_folds_the_distances(
    fp32_bundle: Path,
) -> None:
    meta = read_bundle_metadata(fp32_bundle)
    model = ov.Core().read_model(fp32_bundle / meta.model_file)
    notes = optimize_graph(model)
    assert any(note.startswith("map head Interpolate") for note in notes), notes
    assert any(note.startswith("patch distances to") for note in notes), notes
    kinds = [node.get_type_name() for node in model.get_ordered_ops()]
    assert "Interpolate" not in kinds[-40:] and _big_kernels(model) == []
    # the square root now runs on each patch's minimum only: (patches, 1)
    (folded,) = [n for n in model.get_ordered_ops() if n.get_friendly_name().endswith("/after_min")]
    assert folded.get_type_name() == "Sqrt" and folded.get_output_partial_shape(0)[-1] == 1
    assert optimize_graph(model) == []


def _head(pad_value: float) -> ov.Model:
    """(1, 1, 4, 4) map -> nearest x8 upsample -> pad (constant ``pad_value``) -> 5x5 box."""
    data = ops.parameter([1, 1, 4, 4], np.float32, name="map")
    up = ops.interpolate(
        data, np.array([32, 32], np.int64), "nearest", "sizes", axes=np.array([2, 3], np.int64)
    )
    padded = ops.pad(up, [0, 0, 2, 2], [0, 0, 2, 2], "constant", np.float32(pad_value))
    kernel = ops.constant(np.full((1, 1, 5, 5), 1 / 25, np.float32))
    blur = ops.convolution(padded, kernel, [1, 1], [0, 0], [0, 0], [1, 1])
    return ov.Model([blur], [data])


@pytest.mark.parametrize(("pad_value", "rewritten"), [(0.0, True), (3.0, False)])
def test_map_head_is_rewritten_only_when_linear(
    pad_value: float, rewritten: bool, ov_precision: str
) -> None:
    model = _head(pad_value)
    maps = np.random.default_rng(0).uniform(0, 5, (1, 1, 4, 4)).astype(np.float32)
    expected = compile_at(_head(pad_value), ov_precision)(maps)[0]
    notes = linearise_map_heads(model)
    assert bool(notes) is rewritten  # a non-zero pad makes the head affine: left alone
    kinds = {node.get_type_name() for node in model.get_ordered_ops()}
    assert ("Convolution" not in kinds) is rewritten
    got = compile_at(model, ov_precision)(maps)[0]
    TOLERANCES[ov_precision].assert_close(got, expected)


def _distances(bank: np.ndarray, also_max: bool) -> ov.Model:
    """anomalib's nearest-bank distance of (6, 3) patches; ``also_max`` uses the matrix twice."""
    patches = ops.parameter([6, 3], np.float32, name="patches")
    product = ops.multiply(ops.matmul(patches, ops.constant(bank), False, True), np.float32(-2))
    norms = ops.reduce_sum(ops.power(patches, np.float32(2)), np.int64(-1), True)
    squared = ops.add(ops.add(product, norms), ops.constant((bank**2).sum(1)[None]))
    distances = ops.sqrt(ops.maximum(squared, np.float32(0)))
    outputs = [ops.reduce_min(distances, np.int64(-1))]
    if also_max:
        outputs.append(ops.reduce_max(distances, np.int64(-1)))
    return ov.Model(outputs, [patches])


def test_distances_used_beyond_their_minimum_are_left_alone(ov_precision: str) -> None:
    bank = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    folded, kept = _distances(bank, also_max=False), _distances(bank, also_max=True)
    assert len(fold_patch_distances(folded)) == 1
    assert fold_patch_distances(kept) == []
    x = np.random.default_rng(2).normal(size=(6, 3)).astype(np.float32)
    expected = np.sqrt(((x[:, None] - bank[None]) ** 2).sum(-1)).min(1)
    got = compile_at(folded, ov_precision)(x)[0]
    TOLERANCES[ov_precision].assert_close(got, expected)


def _low_rank_bank(rank: int, rows: int = 30, dims: int = 12) -> np.ndarray:
    """(rows, dims) bank = mean + coordinates @ directions.T, exactly of ``rank`` around its mean."""
    rng = np.random.default_rng(5)
    directions = np.linalg.qr(rng.normal(size=(dims, rank)))[0]
    coords = rng.normal(scale=3.0, size=(rows, rank))
    return (rng.normal(size=dims) + coords @ directions.T).astype(np.float32)


def _nearest(bank: np.ndarray) -> ov.Model:
    """anomalib's nearest-bank distance of (40, D) patches, folded (``fold_patch_distances``)."""
    patches = ops.parameter([40, bank.shape[1]], np.float32, name="patches")
    product = ops.multiply(ops.matmul(patches, ops.constant(bank), False, True), np.float32(-2))
    norms = ops.reduce_sum(ops.power(patches, np.float32(2)), np.int64(-1), True)
    squared = ops.add(ops.add(product, norms), ops.constant((bank**2).sum(1)[None]))
    distances = ops.sqrt(ops.maximum(squared, np.float32(0)))
    model = ov.Model([ops.reduce_min(distances, np.int64(-1))], [patches])
    assert len(fold_patch_distances(model)) == 1
    return model


@pytest.mark.parametrize(("rank", "exact"), [(4, True), (2, False)])
def test_low_rank_distances_are_exact_for_a_bank_of_that_rank(
    rank: int, exact: bool, ov_precision: str
) -> None:
    bank = _low_rank_bank(4)
    x = np.random.default_rng(6).normal(scale=2.0, size=(40, 12)).astype(np.float32)
    expected = np.sqrt(((x[:, None] - bank[None]) ** 2).sum(-1)).min(1)
    model = _nearest(bank)

    notes = project_patch_distances(model, rank)

    assert len(notes) == 1 and f"12 -> {rank} dims" in notes[0], notes
    names = [node.get_friendly_name() for node in model.get_ordered_ops()]
    assert sum(name.endswith("/low_rank") for name in names) == 1
    got = compile_at(model, ov_precision)(x)[0]
    if exact:  # the bank lies in its top-4 subspace: nothing is dropped
        TOLERANCES[ov_precision].assert_close(got, expected)
    else:  # a rank-4 bank on 2 directions: approximate, and visibly so
        assert np.abs(got - expected).max() > 0.1 * np.abs(expected).max()


def test_low_rank_leaves_banks_narrower_than_the_rank_alone() -> None:
    model = _nearest(_low_rank_bank(4))
    assert project_patch_distances(model, 12) == []
    with pytest.raises(ValueError, match="rank must be at least 1, got 0"):
        project_patch_distances(model, 0)


def _layer_product() -> ov.Model:
    """STFPM's head: two layer maps (4x4, 8x8), each bilinearly upsampled to 32x32, multiplied."""
    small = ops.parameter([1, 1, 4, 4], np.float32, name="layer1")
    large = ops.parameter([1, 1, 8, 8], np.float32, name="layer2")
    up = [
        ops.interpolate(m, np.array([32, 32], np.int64), "linear", "sizes",
                        axes=np.array([2, 3], np.int64))
        for m in (small, large)
    ]  # fmt: skip
    return ov.Model([ops.multiply(*up)], [small, large])


def test_every_upsampled_layer_map_before_a_product_becomes_matmuls(ov_precision: str) -> None:
    rng = np.random.default_rng(4)
    maps = [rng.uniform(0, 3, (1, 1, n, n)).astype(np.float32) for n in (4, 8)]
    expected = compile_at(_layer_product(), ov_precision)(maps)[0]
    model = _layer_product()

    notes = linearise_map_heads(model)

    assert len(notes) == 2, notes
    assert "Interpolate" not in {node.get_type_name() for node in model.get_ordered_ops()}
    got = compile_at(model, ov_precision)(maps)[0]
    TOLERANCES[ov_precision].assert_close(got, expected)


@pytest.mark.slow
def test_a_knn_rank_bundle_serves_and_checks_its_projected_graph(
    tiny_product: Path, fp32_bundle: Path, tmp_path: Path
) -> None:
    from inspection.core.product_config import model_config_from_mapping
    from inspection.core.registry import Registry
    from inspection.data.dataset import load_dataset
    from inspection.training.export import ExportOptions
    from inspection.training.registry_export import RegistryExport, export_bundle
    from inspection.training.train import train

    registry = Registry(tmp_path / "registry")
    config = model_config_from_mapping({**TINY_PATCHCORE, "knn_rank": 64}, where="test")
    record = train(config, load_dataset(tiny_product), product="brick", registry=registry,
                   progress=False)  # fmt: skip
    bundle = export_bundle(
        registry, "brick", ExportOptions(precision="fp32"), RegistryExport(record.version)
    ).bundle_dir

    meta = read_bundle_metadata(bundle)
    assert meta.extra["knn_head"]["rank"] == 64
    assert "152 -> 64 dims" in meta.extra["knn_head"]["rewrite"][0]
    model = ov.Core().read_model(bundle / meta.model_file)
    names = [node.get_friendly_name() for node in model.get_ordered_ops()]
    assert sum(name.endswith("/low_rank") for name in names) == 1
    assert project_patch_distances(model, 64) == []  # the 64-wide GEMM is left as it is
    # golden outputs were recorded on the projected graph: the load-time check passes
    projected, exact = Inspector.from_bundle(bundle), Inspector.from_bundle(fp32_bundle)
    assert projected.golden is not None and projected.golden.passed
    batch = _images(exact, seed=7)
    got, expected = projected.model.run(batch).scores, exact.model.run(batch).scores
    assert not np.allclose(got, expected, rtol=1e-6)  # approximate: a different graph
    np.testing.assert_allclose(got, expected, rtol=0.05)  # same model within a few percent
