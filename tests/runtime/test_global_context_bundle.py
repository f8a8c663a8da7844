"""A PatchCore trained with the global-context component, exported and run on the station."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inspection.core.images import read_image
from inspection.core.operating_point import OperatingPoint, choose_threshold
from inspection.core.registry import Registry
from inspection.runtime.inspector import Inspector
from inspection.training.global_context import MIN_GAIN
from tests.conftest import TINY_PATCHCORE

COMPONENTS = ["features", "colour", "frequency"]


@pytest.fixture(scope="module")
def weave_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Registry, Path, Path]:
    from inspection.core.product_config import model_config_from_mapping
    from inspection.data.dataset import load_dataset
    from inspection.data.demo import write_demo_product
    from inspection.training.export import ExportOptions
    from inspection.training.registry_export import export_bundle
    from inspection.training.train import train

    root = write_demo_product(
        tmp_path_factory.mktemp("data"), "weave", seed=3, n_train=16, n_test_good=6,
        n_test_per_defect=2, size=96,
    )  # fmt: skip
    registry = Registry(tmp_path_factory.mktemp("registry"))
    config = model_config_from_mapping(
        {**TINY_PATCHCORE, "global_context": COMPONENTS}, where="test"
    )
    train(config, load_dataset(root), product="weave", registry=registry, progress=False)
    result = export_bundle(registry, "weave", ExportOptions(precision="fp32"))
    return registry, result.bundle_dir, root


def test_record_and_bundle_carry_the_global_context(weave_bundle) -> None:
    registry, bundle_dir, _ = weave_bundle
    record = registry.bundles.version("weave")
    spec = record.global_context()
    assert spec is not None and list(spec.candidates) == COMPONENTS and spec.file in record.files
    assert spec.components and set(spec.components) <= set(COMPONENTS)
    assert set(spec.validation_auroc) >= {"local", "fused", *COMPONENTS}
    assert spec.validation_auroc["fused"] >= spec.validation_auroc["local"] + MIN_GAIN
    inspector = Inspector.from_bundle(bundle_dir)
    pooled = inspector.metadata.output_names.pooled
    assert pooled == ("pooled_features" if "features" in spec.components else None)
    assert inspector.metadata.global_context == spec
    assert spec.file in inspector.metadata.files  # checksummed like the model


def test_station_result_names_its_components(weave_bundle) -> None:
    _, bundle_dir, root = weave_bundle
    inspector = Inspector.from_bundle(bundle_dir)
    images = [read_image(p) for p in sorted((root / "test").rglob("*.png"))[:4]]
    single = [inspector.inspect(image) for image in images]
    batched = inspector.inspect_batch(images)
    many = inspector.inspect_many(images, jobs=2)
    for one, two, three in zip(single, batched, many, strict=True):
        kept = inspector.metadata.global_context.components
        assert set(one.components) == {"local", *kept}
        assert one.driver == max(one.components, key=one.components.get)
        assert one.summary()["driver"] == one.driver
        assert two.score == pytest.approx(one.score, abs=1e-5)
        assert three.components == pytest.approx(one.components, abs=1e-4)


def test_bundle_scores_match_training(weave_bundle) -> None:
    """The fused score of the bundle equals the one training computed (same pixels, same graph)."""
    from inspection.training.global_context import fused_scores, model_outputs
    from inspection.training.train import load_trained_model

    registry, bundle_dir, root = weave_bundle
    record = registry.bundles.version("weave")
    inspector = Inspector.from_bundle(bundle_dir)
    paths = sorted((root / "test").rglob("*.png"))[:4]
    context = inspector.model.context
    outputs = model_outputs(
        load_trained_model(record).model,
        paths,
        inspector.metadata.preprocessing,
        context.feature_layers,
    )
    expected, _ = fused_scores(context, outputs)
    from inspection.runtime.preprocess import model_batch

    batch = model_batch([read_image(p) for p in paths], inspector.metadata.preprocessing)
    got = inspector.model.infer(batch).scores
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-2)


def test_missing_context_file_is_refused(weave_bundle, tmp_path) -> None:
    import shutil

    from inspection.core.errors import BundleError

    _, bundle_dir, _ = weave_bundle
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    (copy / "global_context.npz").unlink()
    with pytest.raises(BundleError, match=r"global_context\.npz is missing"):
        Inspector.from_bundle(copy)


def test_record_describes_the_threshold_in_force(weave_bundle) -> None:
    """With components kept, the recorded operating point is the fused threshold applied
    (chosen on the good validation images and the training images' out-of-fold fused
    scores), not the local model's."""
    registry, _, _ = weave_bundle
    record = registry.bundles.version("weave")
    calibration = record.metrics["calibration"]
    operating, applied = calibration["operating"], record.extra["normalization"]
    assert record.global_context().components
    assert operating["threshold"] == pytest.approx(applied["image_threshold_raw"])
    assert calibration["normalization"]["image_threshold_raw"] == operating["threshold"]
    sources = operating["good_sources"]
    assert sources["out_of_fold_train"] == len(record.good_scores().out_of_fold) > 0
    assert sum(sources.values()) == operating["n_good"] > sources["validation"]
    assert not calibration.get("good_scores")  # the local scores did not set the fused threshold


def test_bundle_threshold_takes_the_out_of_fold_fused_scores(weave_bundle) -> None:
    """The bundle's own fused threshold is set on its good validation scores and every
    training image's out-of-fold fused score in its space, as many as the version recorded."""
    from inspection.core.global_context import component_vectors
    from inspection.training.global_context import (
        TrainOutOfFold,
        fused_scores,
        model_outputs,
        out_of_fold_fused,
    )
    from inspection.training.train import load_trained_model

    registry, bundle_dir, root = weave_bundle
    record = registry.bundles.version("weave")
    inspector = Inspector.from_bundle(bundle_dir)
    operating = inspector.metadata.output_calibration.operating
    good = record.good_scores()
    assert operating.good_sources["out_of_fold_train"] == len(good.out_of_fold)
    assert operating.n_good == operating.good_sources["validation"] + len(good.out_of_fold)
    carried, weights = inspector.metadata.output_calibration.good_set()  # what set it, signed
    again = choose_threshold(carried, OperatingPoint(budget=operating.budget), good_weights=weights)
    assert again.threshold == pytest.approx(operating.threshold)
    # the fused scores of unseen training images sit above their in-sample ones
    context = inspector.model.context
    paths = sorted((root / "train" / "good").glob("*.png"))
    outputs = model_outputs(
        load_trained_model(record).model, paths, inspector.metadata.preprocessing,
        context.feature_layers,
    )  # fmt: skip
    vectors = component_vectors(context.components, outputs.images, outputs.pooled)
    rows = np.arange(len(paths))
    unseen = out_of_fold_fused(context, vectors, TrainOutOfFold(rows, outputs.local_raw))
    seen, _ = fused_scores(context, outputs)
    assert np.median(unseen) > np.median(seen)
