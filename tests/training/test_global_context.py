from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspection.core.bundle import Preprocessing
from inspection.core.global_context import fuse
from inspection.training.global_context import (
    MIN_GAIN,
    batched_outputs,
    fit_gaussian,
    fit_global_context,
    fit_standardiser,
    out_of_fold_distances,
    restrict,
    select_components,
)
from tests.core.test_global_context import stripes


def test_fit_scores_global_defects_above_normal_images() -> None:
    train = [stripes(8, seed=s) for s in range(12)]
    context = fit_global_context(
        ["colour", "frequency"], train, validation_local_raw=np.linspace(0.0, 1.0, 6)
    )
    tinted = stripes(8, seed=200)
    tinted[..., 2] = np.clip(tinted[..., 2].astype(int) + 25, 0, 255).astype(np.uint8)
    tests = [stripes(8, seed=201), stripes(5, seed=202), stripes(8, angle=25, seed=203), tinted]
    z = context.z_scores(context.distances(images=tests), local_raw=np.zeros(4))
    fused, drivers = fuse(z)
    assert fused[0] < 5.0 and (fused[1:] > 20.0).all()  # z of a normal image vs defects
    assert drivers[1] == "frequency" and drivers[3] == "colour"


def test_normal_scale_is_the_one_of_unseen_good_images() -> None:
    rng = np.random.default_rng(0)
    train, unseen = rng.normal(size=(60, 152)), rng.normal(size=(400, 152))
    gaussian = fit_gaussian(train)
    on_unseen = gaussian.distance(unseen)
    in_sample = fit_standardiser(gaussian.distance(train)).z(on_unseen)
    held_out = fit_standardiser(out_of_fold_distances(train)).z(on_unseen)
    # scored on its own images the Gaussian looks tighter than it is: new good parts get z > 1
    assert in_sample.mean() > 1.0 and abs(held_out.mean()) < 0.5


def test_selection_keeps_a_helpful_component_and_drops_noise() -> None:
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 40)
    local = rng.normal(size=80) + 2.0 * labels * (np.arange(80) % 2)  # finds half the defects
    helpful = rng.normal(size=80) + 4.0 * labels * (1 - np.arange(80) % 2)  # finds the others
    noise = rng.normal(size=80)
    selection = select_components({"local": local, "colour": helpful, "features": noise}, labels)
    assert selection.kept == ("colour",)
    assert selection.validation_auroc["fused"] >= selection.validation_auroc["local"] + MIN_GAIN
    assert set(selection.validation_auroc) == {"local", "colour", "features", "+colour", "fused"}


def test_selection_keeps_local_alone_when_it_is_perfect() -> None:
    labels = np.repeat([0, 1], 10)
    local = labels * 5.0 + np.linspace(0, 1, 20)
    selection = select_components({"local": local, "frequency": labels * 9.0}, labels)
    assert selection.kept == () and selection.validation_auroc["fused"] == 1.0
    with pytest.raises(ValueError, match="local"):
        select_components({"frequency": local}, labels)


def test_restrict_keeps_only_the_chosen_components() -> None:
    train = [stripes(8, seed=s) for s in range(8)]
    pooled = np.random.default_rng(0).normal(size=(8, 5))
    context = fit_global_context(
        ["features", "colour", "frequency"], train, train_pooled=pooled,
        feature_layers=["blocks.2"], validation_local_raw=np.arange(4.0),
    )  # fmt: skip
    kept = restrict(context, ["frequency"])
    assert kept.components == ("frequency",) and kept.feature_layers == ()
    assert set(kept.standardisers) == {"frequency", "local"}


def test_features_component_needs_pooled_vectors() -> None:
    with pytest.raises(ValueError, match="pooled"):
        fit_global_context(["features"], [stripes(8)] * 4)


def test_ledoit_wolf_handles_more_dimensions_than_images() -> None:
    vectors = np.random.default_rng(0).normal(size=(10, 50))
    gaussian = fit_gaussian(vectors)
    assert np.isfinite(gaussian.distance(vectors)).all()
    assert np.isfinite(out_of_fold_distances(vectors)).all()


def test_refit_on_a_bundles_own_outputs_removes_a_quantisation_shift() -> None:
    from inspection.training.global_context import refit_on_outputs

    rng = np.random.default_rng(2)
    train = [stripes(8, seed=s) for s in range(10)]
    pooled = rng.normal(size=(10, 6))
    context = fit_global_context(
        ["features", "colour"], train, train_pooled=pooled, feature_layers=["blocks.4"],
        validation_local_raw=np.linspace(0.0, 1.0, 5),
    )  # fmt: skip
    shifted = pooled + 3.0  # the quantised graph's features of the same good images
    before = context.z_scores(context.distances(images=train[:3], pooled=shifted[:3]))
    refitted = refit_on_outputs(context, shifted, np.linspace(2.0, 3.0, 5))
    after = refitted.z_scores(refitted.distances(images=train[:3], pooled=shifted[:3]))
    assert before["features"].min() > 3.0 and abs(after["features"]).max() < 3.0
    np.testing.assert_allclose(after["colour"], before["colour"])
    assert refitted.standardisers["local"].mean == pytest.approx(2.5)
    with pytest.raises(ValueError, match="pooled"):
        refit_on_outputs(context, None, np.arange(3.0))


@pytest.mark.parametrize("keep", [True, False])
def test_batched_outputs_keep_the_images_only_when_asked(tmp_path: Path, keep: bool) -> None:
    paths = []
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    prep = Preprocessing(input_size=(8, 8), mean=(0.5,) * 3, std=(0.25,) * 3)

    def run(batch: np.ndarray) -> tuple[np.ndarray, None]:
        return batch.mean(axis=(1, 2, 3)), None

    outputs = batched_outputs(run, paths, prep, batch_size=2, images=keep)
    assert outputs.local_raw.shape == (3,) and outputs.pooled.shape == (3, 0)
    assert len(outputs.images) == (3 if keep else 0)
