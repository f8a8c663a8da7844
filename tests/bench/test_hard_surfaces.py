"""bench/hard_surfaces.py's engine: levers score like anomalib's PatchCore; binned intervals."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

_BENCH = Path(__file__).resolve().parents[2] / "bench"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, _BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


metrics = _module("_hard_metrics")


def _maps(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n, size = 12, 32
    labels = np.r_[np.zeros(6, int), np.ones(6, int)]
    maps = rng.normal(0, 1, (n, size, size)).astype(np.float32)
    masks = np.zeros((n, size, size), bool)
    for i in range(6, n):
        y, x = rng.integers(4, 24, 2)
        masks[i, y : y + 5, x : x + 6] = True
        maps[i][masks[i]] += rng.uniform(0.5, 2.5)
    scores = maps.reshape(n, -1).max(1)
    return scores, maps, labels, masks


def test_binned_point_values_match_the_exact_ones() -> None:
    scores, maps, labels, masks = _maps()
    out = metrics.figures(scores, maps, labels, masks, resamples=50)
    for name in ("pixel_auroc", "aupro"):
        fig = out[name]
        assert abs(fig["binned"] - fig["value"]) < 0.01, (name, fig)
        assert fig["low"] <= fig["binned"] <= fig["high"]
        assert fig["high"] - fig["low"] > 0.0


def test_without_intervals_only_point_values() -> None:
    scores, maps, labels, masks = _maps(1)
    out = metrics.figures(scores, maps, labels, masks, intervals=False)
    assert set(out["pixel_auroc"]) == {"value"} and set(out["aupro"]) == {"value"}


def test_peaks_inside_and_outside_the_defect() -> None:
    maps = np.zeros((2, 8, 8), np.float32)
    maps[1, 2, 2] = 5.0
    maps[1, 6, 6] = 3.0
    masks = np.zeros((2, 8, 8), bool)
    masks[1, 1:4, 1:4] = True
    rows = metrics.peaks(maps, np.array([0, 1]), masks, ["good", "pit"])
    assert rows[0]["peak_inside"] is None and rows[0]["area_px"] == 0
    assert rows[1] == {"kind": "pit", "label": 1, "peak": 5.0, "peak_inside": 5.0,
                       "peak_outside": 3.0, "area_px": 9}  # fmt: skip


@pytest.mark.parametrize("neighbors", [1, 9])
def test_lever_scores_equal_anomalib_patchcore(neighbors: int) -> None:
    torch = pytest.importorskip("torch")
    from anomalib.models.image.patchcore.torch_model import PatchcoreModel

    levers = _module("_hard_levers")
    torch.manual_seed(0)
    embedding = torch.randn(3, 16, 6, 5)
    bank = torch.randn(40, 16)
    lever = levers.Lever("t", "t", neighbors=neighbors)
    fitted = levers.FittedLever(bank, None, 0.0, 40)
    image, patches = levers.score(embedding, fitted, lever)

    model = PatchcoreModel(["blocks.2"], "tf_efficientnet_lite0", False, num_neighbors=neighbors)
    model.memory_bank = bank
    flat = model.reshape_embedding(embedding)
    ref_patch, ref_loc = model.nearest_neighbors(flat, n_neighbors=1)
    ref_image = model.compute_anomaly_score(ref_patch.reshape(3, -1), ref_loc.reshape(3, -1), flat)
    torch.testing.assert_close(
        patches.reshape(3, -1), ref_patch.reshape(3, -1), rtol=1e-4, atol=1e-4
    )
    torch.testing.assert_close(image, ref_image, rtol=1e-4, atol=1e-4)


def test_positional_neighbours_only_from_nearby_cells() -> None:
    torch = pytest.importorskip("torch")
    levers = _module("_hard_levers")
    # one training image on a 1 x 4 grid: cell 0 holds (0, 0), cell 3 holds (5, 5). A query
    # with (5, 5) at cell 0 matches cell 3 exactly: plain PatchCore scores it 0, the
    # positional one (radius 1: cells 0-1, nearest (1, 1)) sqrt(32).
    train = torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0], [5.0, 5.0]]).T.reshape(1, 2, 1, 4)
    query = torch.tensor([[5.0, 5.0], [1.0, 1.0], [1.0, 1.0], [5.0, 5.0]]).T.reshape(1, 2, 1, 4)
    near = levers.Lever("n", "n", layers=("blocks.2",), pool=1, neighbors=1, position_radius=1)
    fitted = levers.fit_lever({"blocks.2": train}, near)
    assert fitted.bank.shape == (4, 2) and fitted.select_s == 0.0
    image, positional = levers.score(query, fitted, near)
    plain_fit = levers.FittedLever(fitted.bank, None, 0.0, 4)
    _, plain = levers.score(query, plain_fit, levers.Lever("p", "p", neighbors=1))
    assert float(plain[0, 0, 0]) == pytest.approx(0.0, abs=1e-3)
    assert float(positional[0, 0, 0]) == pytest.approx(float(np.sqrt(32.0)), rel=1e-4)
    assert float(positional[0, 0, 3]) == pytest.approx(0.0, abs=1e-3)
    assert float(image[0]) == pytest.approx(float(np.sqrt(32.0)), rel=1e-4)


def test_overrides_name_only_what_the_config_can_express() -> None:
    levers = _module("_hard_levers")
    lever = levers.Lever("x", "x", scale=2.0, ratio=0.1)
    assert lever.size == 512
    assert lever.overrides() == ("image_size=[512,512]", "coreset_sampling_ratio=0.1")
    assert levers.Lever("x", "x").overrides() == ()
    assert levers.Lever("x", "x", pool=5).overrides() is None
    assert levers.Lever("x", "x", map_score=True).overrides() is None
    assert levers.Lever("x", "x", stats=0.5).overrides() is None
    assert levers.Lever("x", "x", fusion="stats").overrides() is None
    assert levers.Lever("x", "x", padim=True).overrides() is None
    assert levers.Lever("x", "x", fusion="global").overrides() == (
        "global_context=[features,colour,frequency]",
    )


def test_local_statistics_mean_and_std_per_window() -> None:
    torch = pytest.importorskip("torch")
    levers = _module("_hard_levers")
    flat = torch.full((1, 3, 64, 64), 0.5)
    stats = levers.local_statistics(flat)
    assert stats.shape == (1, 6, 8, 8)
    torch.testing.assert_close(stats[:, :3], torch.full((1, 3, 8, 8), 0.5))
    assert float(stats[:, 3:].abs().max()) < 1e-3
    step = flat.clone()
    step[..., 32:] = -0.5  # a vertical edge: std only in windows that straddle it
    stats = levers.local_statistics(step)
    assert float(stats[0, 3, 0, 0]) < 1e-3 and float(stats[0, 3, 0, 4]) > 0.4


def test_padim_is_the_mahalanobis_distance_to_each_cell() -> None:
    torch = pytest.importorskip("torch")
    levers = _module("_hard_levers")
    torch.manual_seed(0)
    train = torch.randn(12, 4, 2, 3)
    lever = levers.Lever("g", "g", layers=("blocks.2",), pool=1, neighbors=1, padim=True)
    fitted = levers.fit_lever({"blocks.2": train}, lever)
    query = torch.randn(2, 4, 2, 3)
    image, patches = levers.score(query, fitted, lever)
    cell = train[:, :, 1, 2].double().numpy()
    cov = np.cov(cell, rowvar=False) + 0.01 * np.eye(4)
    delta = query[:, :, 1, 2].double().numpy() - cell.mean(0)
    expected = np.sqrt(np.einsum("nd,de,ne->n", delta, np.linalg.inv(cov), delta))
    np.testing.assert_allclose(patches[:, 1, 2].numpy(), expected, rtol=1e-3)
    np.testing.assert_allclose(image.numpy(), patches.reshape(2, -1).amax(1).numpy())


def test_stats_fusion_is_the_max_of_validation_standardised_scores() -> None:
    levers = _module("_hard_levers")
    zeros = np.zeros((4, 2, 2), np.float32)
    labels = np.array([0, 0, 0, 1])
    peaks = np.array([1.0, 2.0, 3.0, 9.0], np.float32)
    main = levers.Scored(peaks, zeros + peaks[:, None, None])
    side = levers.Scored(np.array([10.0, 20.0, 30.0, 40.0], np.float32), zeros)
    val = levers.Outputs(main, side)
    fused_val, fused_test = levers.fuse_stats(val, labels, val)
    # main: good mean 2, std 1 -> z 7 for the defect; side: mean 20, std 10 -> z 2
    np.testing.assert_allclose(fused_val.scores, [-1.0, 0.0, 1.0, 7.0], atol=1e-6)
    np.testing.assert_allclose(fused_test.scores, fused_val.scores)
    assert float(fused_val.maps[3].max()) == pytest.approx(7.0)
