from __future__ import annotations

import numpy as np
import pytest

from inspection.core.global_context import fuse
from inspection.training.global_context import fit_gaussian, fit_global_context
from tests.core.test_global_context import stripes


def test_fit_scores_global_defects_above_normal_images() -> None:
    train = [stripes(8, seed=s) for s in range(12)]
    val_good = [stripes(8, seed=100 + s) for s in range(6)]
    context = fit_global_context(
        ["colour", "frequency"], train, val_good, validation_local_raw=np.linspace(0.0, 1.0, 6)
    )
    tinted = stripes(8, seed=200)
    tinted[..., 2] = np.clip(tinted[..., 2].astype(int) + 25, 0, 255).astype(np.uint8)
    tests = [stripes(8, seed=201), stripes(5, seed=202), stripes(8, angle=25, seed=203), tinted]
    z = context.z_scores(context.distances(images=tests), local_raw=np.zeros(4))
    fused, drivers = fuse(z)
    assert fused[0] < 10.0 and (fused[1:] > 20.0).all()  # z of a normal image vs defects
    assert drivers[1] == "frequency" and drivers[3] == "colour"


def test_features_component_needs_pooled_vectors() -> None:
    with pytest.raises(ValueError, match="pooled"):
        fit_global_context(["features"], [stripes(8)] * 3, [stripes(8)] * 3)


def test_ledoit_wolf_handles_more_dimensions_than_images() -> None:
    vectors = np.random.default_rng(0).normal(size=(10, 50))
    gaussian = fit_gaussian(vectors)
    assert np.isfinite(gaussian.distance(vectors)).all()
