from __future__ import annotations

import numpy as np
import pytest

from inspection.core.global_context import (
    ANGULAR_BINS,
    RADIAL_BINS,
    Gaussian,
    GlobalContext,
    Standardiser,
    colour_statistics,
    frequency_statistics,
    fuse,
)


def stripes(period: float, angle: float = 0.0, seed: int = 0, size: int = 96) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    theta = np.deg2rad(angle)
    wave = 0.5 + 0.4 * np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period)
    grey = np.clip(wave + rng.normal(0, 0.05, wave.shape), 0, 1)
    return (np.stack([grey, grey * 0.9, grey * 0.8], axis=2) * 255).astype(np.uint8)


def test_statistics_shapes_and_bad_input() -> None:
    image = stripes(8)
    assert colour_statistics(image).shape == (12,)
    assert frequency_statistics(image).shape == (RADIAL_BINS + ANGULAR_BINS,)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8 or float32"):
        colour_statistics(image.astype(np.float64))


def test_frequency_sees_density_and_rotation() -> None:
    base = frequency_statistics(stripes(8))
    same = frequency_statistics(stripes(8, seed=1))
    denser = frequency_statistics(stripes(5))
    rotated = frequency_statistics(stripes(8, angle=30))
    assert np.linalg.norm(denser - base) > 3 * np.linalg.norm(same - base)
    assert np.linalg.norm(rotated - base) > 3 * np.linalg.norm(same - base)


def test_colour_sees_a_tint() -> None:
    image = stripes(8)
    tinted = image.copy()
    tinted[..., 0] = np.clip(tinted[..., 0].astype(int) + 20, 0, 255).astype(np.uint8)
    assert colour_statistics(tinted)[0] > colour_statistics(image)[0] + 0.05


def test_gaussian_distance_and_shape_checks() -> None:
    gaussian = Gaussian(np.zeros(2), np.diag([1.0, 4.0]))
    np.testing.assert_allclose(gaussian.distance(np.array([[3.0, 0.0], [0.0, 1.0]])), [3.0, 2.0])
    with pytest.raises(ValueError, match=r"expected \(N, 2\)"):
        gaussian.distance(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="precision"):
        Gaussian(np.zeros(2), np.eye(3))


def test_fuse_is_max_and_names_the_driver() -> None:
    fused, drivers = fuse({"local": np.array([1.0, 5.0]), "colour": np.array([3.0, 0.0])})
    np.testing.assert_allclose(fused, [3.0, 5.0])
    assert drivers == ["colour", "local"]
    with pytest.raises(ValueError):
        fuse({})


def test_standardiser_rejects_zero_std() -> None:
    with pytest.raises(ValueError, match="std > 0"):
        Standardiser(0.0, 0.0)


def test_context_round_trip(tmp_path) -> None:
    context = GlobalContext(
        {"colour": Gaussian(np.zeros(12), np.eye(12)), "features": Gaussian(np.ones(3), np.eye(3))},
        {
            "colour": Standardiser(1.0, 2.0),
            "features": Standardiser(0.5, 1.0),
            "local": Standardiser(3.0, 1.0),
        },
        ("blocks.2",),
    )
    loaded = GlobalContext.load(context.save(tmp_path / "gc.npz"))
    assert loaded.components == ("features", "colour")
    assert loaded.standardisers == context.standardisers
    assert loaded.feature_layers == ("blocks.2",)
    np.testing.assert_array_equal(loaded.gaussians["features"].mean, np.ones(3))


def test_context_validation() -> None:
    with pytest.raises(ValueError, match="unknown global components"):
        GlobalContext({"shape": Gaussian(np.zeros(1), np.eye(1))}, {"shape": Standardiser(0, 1)})
    with pytest.raises(ValueError, match="no standardiser"):
        GlobalContext({"colour": Gaussian(np.zeros(1), np.eye(1))}, {})
    with pytest.raises(ValueError, match="pooled layers"):
        GlobalContext(
            {"features": Gaussian(np.zeros(1), np.eye(1))}, {"features": Standardiser(0, 1)}
        )
