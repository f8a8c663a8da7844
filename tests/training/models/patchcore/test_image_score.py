"""PatchCore's image score as the peak of its (blurred) anomaly map (``training.models.patchcore.image_score``):
the head against numpy, ``auto``'s choice on validation, the config, and a trained model's
score, checkpoint and exported graph."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from inspection.core.errors import ConfigError
from inspection.core.product_config import model_config_from_mapping
from inspection.core.registry import Registry
from inspection.data.dataset import load_dataset
from inspection.training.models.patchcore.image_score import (
    BLUR_CANDIDATES,
    POOL,
    MapPeakHead,
    choose_blur,
    gaussian_kernel,
)
from inspection.training.train import TrainOutcome, load_trained_model, train_model
from tests.conftest import TINY_PATCHCORE

slow = pytest.mark.slow
SIDE = 128


def _spike_map(rng: np.random.Generator, height: float) -> np.ndarray:
    """Good texture's map: low noise with one sharp isolated peak of ``height``."""
    amap = rng.uniform(0, 0.2, (SIDE, SIDE))
    y, x = rng.integers(10, SIDE - 10, 2)
    amap[y - 1 : y + 2, x - 1 : x + 2] = height
    return amap


def _ridge_map(rng: np.random.Generator, height: float) -> np.ndarray:
    """A thin defect's map: the same noise with a long faint ridge of ``height``."""
    amap = rng.uniform(0, 0.2, (SIDE, SIDE))
    row = rng.integers(20, SIDE - 20)
    amap[row - 2 : row + 2, 16 : SIDE - 16] = height
    return amap


def _batch(maps: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(maps)[:, None].astype(np.float32))


def test_kernel_is_a_normalised_gaussian_with_a_bounded_radius() -> None:
    kernel = gaussian_kernel(4.0, max_radius=100)
    assert kernel.numel() == 25 and float(kernel.sum()) == pytest.approx(1.0)
    assert int(kernel.argmax()) == 12
    assert gaussian_kernel(40.0, max_radius=7).numel() == 15


def test_without_blur_the_score_is_the_map_peak() -> None:
    maps = _batch([_spike_map(np.random.default_rng(i), 1.0) for i in range(3)])
    head = MapPeakHead()
    torch.testing.assert_close(head.peaks(maps), maps.amax(dim=(1, 2, 3)))


def test_blur_is_a_gaussian_on_the_pooled_map() -> None:
    amap = _ridge_map(np.random.default_rng(0), 0.6)
    head = MapPeakHead()
    head.set_blur(1 / 16, SIDE)
    pooled = amap.reshape(SIDE // POOL, POOL, SIDE // POOL, POOL).mean((1, 3))
    sigma = SIDE / 16 / POOL
    expected = gaussian_filter(pooled, sigma, mode="mirror", truncate=3.0).max()
    assert float(head.peaks(_batch([amap]))[0]) == pytest.approx(expected, rel=1e-4)


def test_blur_ranks_a_long_faint_ridge_above_an_isolated_spike() -> None:
    rng = np.random.default_rng(1)
    spike, ridge = _spike_map(rng, 1.0), _ridge_map(rng, 0.6)
    head = MapPeakHead()
    plain = head.peaks(_batch([spike, ridge]))
    head.set_blur(1 / 16, SIDE)
    blurred = head.peaks(_batch([spike, ridge]))
    assert plain[0] > plain[1]  # the peak alone: the good part's spike wins
    assert blurred[1] > blurred[0]  # blurred: the defect's spread-out evidence wins


def test_a_small_map_takes_any_blur() -> None:
    head = MapPeakHead()
    head.set_blur(0.45, 32)
    assert head.peaks(torch.rand(2, 1, 32, 32)).shape == (2,)


def _validation(defect: str, n: int = 24) -> tuple[torch.Tensor, np.ndarray]:
    """Good maps with spikes of random height; defects as ridges or as spikes."""
    rng = np.random.default_rng(7)
    maps = [_spike_map(rng, rng.uniform(0.8, 1.2)) for _ in range(n)]
    make = _ridge_map if defect == "ridge" else _spike_map
    maps += [make(rng, rng.uniform(0.55, 0.75) if defect == "ridge" else 1.3) for _ in range(n)]
    return _batch(maps), np.array([0] * n + [1] * n)


def test_auto_blurs_where_validation_defects_are_spread_out() -> None:
    maps, labels = _validation("ridge")
    head = MapPeakHead()
    choice = choose_blur(head, maps, labels, "auto", SIDE)
    assert choice.mode == "auto" and choice.fraction in BLUR_CANDIDATES
    assert head.kernel.numel() > 0
    assert choice.validation_auroc["0"] < 0.7 < choice.validation_auroc[f"{choice.fraction:.4g}"]
    assert "interval above 0" not in choice.reason


def test_auto_keeps_the_plain_peak_where_the_blur_does_not_help() -> None:
    maps, labels = _validation("spike")
    head = MapPeakHead()
    choice = choose_blur(head, maps, labels, "auto", SIDE)
    assert (choice.fraction, head.kernel.numel()) == (0.0, 0)
    assert choice.validation_auroc["0"] == 1.0
    assert "no blur adds" in choice.reason


def test_auto_without_defects_and_a_fixed_setting() -> None:
    maps, _ = _validation("ridge")
    head = MapPeakHead()
    assert choose_blur(head, maps, np.zeros(len(maps)), "auto", SIDE).fraction == 0.0
    fixed = choose_blur(head, maps, np.zeros(len(maps)), 0.05, SIDE)
    assert (fixed.mode, fixed.fraction) == ("fixed", 0.05) and head.kernel.numel() > 0


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"image_score": "max"}, "must be one of patch, map_peak"),
        ({"image_score_blur": "auto"}, "needs image_score: map_peak"),
        ({"image_score": "map_peak", "image_score_blur": 0.5}, "in [0, 0.5)"),
        ({"kind": "stfpm", "image_score": "map_peak"}, "only a patchcore model"),
    ],
)
def test_config_refuses_settings_that_cannot_work(settings: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        model_config_from_mapping({**TINY_PATCHCORE, **settings})


# ------------------------------------------------------------------ a trained model


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "local_statistics"])
def trained(
    request: pytest.FixtureRequest, tiny_product: Path, tmp_path_factory: pytest.TempPathFactory
) -> TrainOutcome:
    """A tiny PatchCore scored by its map's peak after a fixed blur, with and without the
    local-statistics head."""
    config = model_config_from_mapping({
        **TINY_PATCHCORE, "image_score": "map_peak", "image_score_blur": 0.0625,
        "local_statistics": request.param,
    })  # fmt: skip
    registry = Registry(tmp_path_factory.mktemp("registry"))
    return train_model(
        config, load_dataset(tiny_product), product="brick", registry=registry, progress=False
    )


def _images(outcome: TrainOutcome, product: Path) -> torch.Tensor:
    from inspection.training.models.patchcore.out_of_fold import model_inputs

    return model_inputs(outcome.model, load_dataset(product).test_samples[:6], (64, 64))


@slow
def test_trained_score_is_the_blurred_peak_of_its_own_map(
    trained: TrainOutcome, tiny_product: Path
) -> None:
    inner = trained.model.model
    assert trained.record.extra["image_score"]["fraction"] == 0.0625
    assert inner.map_peak.kernel.numel() > 0
    with torch.no_grad():
        out = inner(_images(trained, tiny_product))
    torch.testing.assert_close(out.pred_score, inner.map_peak.peaks(out.anomaly_map))
    assert not torch.allclose(out.pred_score, out.anomaly_map.amax(dim=(1, 2, 3)))


@slow
def test_checkpoint_and_exported_graph_keep_the_score(
    trained: TrainOutcome, tiny_product: Path
) -> None:
    from inspection.training.convert import SCORE_OUTPUT, convert_torch_model
    from tests.ov_precision import compile_at

    images = _images(trained, tiny_product)
    reloaded = load_trained_model(trained.record).model
    with torch.no_grad():
        expected = trained.model.model(images).pred_score
        # the trained model runs its in-process forms (training.backbones.in_process): rounding
        torch.testing.assert_close(reloaded(images).pred_score, expected, rtol=1e-5, atol=1e-5)
    compiled = compile_at(convert_torch_model(copy.deepcopy(reloaded).eval(), (64, 64)), "f32")
    # standardised scores are differences of distances: f32 rounding is absolute on their scale
    # and its size depends on the CPU's kernels (AVX2 and AVX-512 accumulate in other orders)
    scale = float(expected.abs().max())
    for batch in (images, images[:1]):  # dynamic batch
        out = compiled(batch.numpy())[SCORE_OUTPUT]
        reference = expected[: len(batch)].numpy()
        np.testing.assert_allclose(out, reference, rtol=1e-4, atol=1e-4 * scale)
