"""PaDiM (``kind: padim``) end to end on a tiny aligned part: train, export, parity, station."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspection.core.errors import ConfigError
from inspection.core.model_record import ModelRecord
from inspection.core.product_config import load_model_config, model_config_from_mapping
from inspection.core.registry import Registry

pytestmark = pytest.mark.slow

SIZE = 128  # model input: a 16 x 16 grid of Gaussians (blocks.2, stride 8)
N_FEATURES = 32
FOLDS = 3
TINY_PADIM = {"kind": "padim", "image_size": [SIZE, SIZE], "n_features": N_FEATURES,
              "calibration_folds": FOLDS, "val_fraction": 0.3,
              "covariance": "ledoit_wolf"}  # fmt: skip


@dataclass(frozen=True)
class TrainedPadim:
    registry: Registry
    record: ModelRecord
    dataset_root: Path
    bundle: Path


@pytest.fixture(scope="module")
def padim(tmp_path_factory: pytest.TempPathFactory) -> TrainedPadim:
    """A tiny PaDiM trained on a tiny ``part`` (the aligned demo product) and its FP32 bundle
    (exported with ``force``: 4 good validation images cannot promise a 1 % budget)."""
    from inspection.data.dataset import load_dataset
    from inspection.data.demo import write_demo_product
    from inspection.training.export import ExportOptions
    from inspection.training.registry_export import RegistryExport, export_bundle
    from inspection.training.train import train

    root = write_demo_product(
        tmp_path_factory.mktemp("datasets"), "part", seed=3, n_train=24, n_test_good=8,
        n_test_per_defect=3, size=SIZE,
    )  # fmt: skip
    registry = Registry(tmp_path_factory.mktemp("registry"))
    config = model_config_from_mapping(TINY_PADIM, where="tests TINY_PADIM")
    record = train(config, load_dataset(root), product="part", registry=registry, progress=False)
    result = export_bundle(
        registry, "part", ExportOptions(precision="fp32", force=True),
        RegistryExport(version=record.version),
    )  # fmt: skip
    return TrainedPadim(registry, record, root, result.bundle_dir)


@pytest.fixture(scope="module")
def images(padim: TrainedPadim) -> list[np.ndarray]:
    """Good and defective test images at the model input size (bilinear, as training)."""
    from inspection.core.images import read_image

    paths = sorted((padim.dataset_root / "test").rglob("*.png"))[::3][:6]
    return [cv2.resize(read_image(p), (SIZE, SIZE), interpolation=cv2.INTER_LINEAR) for p in paths]


def test_shipped_padim_config() -> None:
    config = load_model_config("padim", product="part")
    assert config.kind == "padim" and config.calibration_folds == 5 and config.n_features == 100
    assert config.covariance == "ledoit_wolf"
    assert config.backbone.layers == ("blocks.2", "blocks.4")


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"kind": "padim", "covariance": "shrunk"},
         "covariance: unknown estimator 'shrunk'; valid: ridge, ledoit_wolf, oas"),
        ({"kind": "patchcore", "covariance": "ledoit_wolf"},
         r"covariance: only a padim model fits Gaussians \(this is patchcore\); remove it"),
        ({"kind": "padim", "covariances": "oas"}, "covariances"),
    ],
)  # fmt: skip
def test_covariance_config_is_validated(mapping: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        model_config_from_mapping(mapping, where="test")


@pytest.mark.parametrize("covariance", ["ridge", "ledoit_wolf", "oas"])
def test_every_estimator_builds_its_gaussian(covariance: str) -> None:
    from inspection.training.backbones import resolve_weights
    from inspection.training.models import build_model
    from inspection.training.models.padim.gaussian import served_covariance

    config = model_config_from_mapping({**TINY_PADIM, "covariance": covariance}, where="test")
    model = build_model(config, resolve_weights(config.backbone.name, "random"))
    assert served_covariance(model.model) == covariance


def test_ridge_is_anomalibs_own_gaussian() -> None:
    """``ridge`` keeps anomalib's estimator (sample covariance + 0.01 I) bit for bit."""
    import torch
    from anomalib.models.components import MultiVariateGaussian

    from inspection.training.models.padim.gaussian import PadimGaussian

    embeddings = torch.randn(12, 6, 3, 3, generator=torch.Generator().manual_seed(0))
    ours, theirs = PadimGaussian("ridge"), MultiVariateGaussian()
    ours.fit(embeddings)
    theirs.fit(embeddings)
    torch.testing.assert_close(ours.mean, theirs.mean, rtol=0, atol=0)
    torch.testing.assert_close(ours.inv_covariance, theirs.inv_covariance, rtol=0, atol=0)


def test_out_of_fold_refuses_a_gaussian_of_unknown_estimator() -> None:
    from types import SimpleNamespace

    from anomalib.models.components import MultiVariateGaussian

    from inspection.training.models.padim.gaussian import PadimGaussian, served_covariance

    with pytest.raises(ValueError, match="unknown covariance estimator 'lw'; valid: ridge"):
        PadimGaussian("lw")
    with pytest.raises(RuntimeError, match=r"build it with training\.models\.build_model"):
        served_covariance(SimpleNamespace(gaussian=MultiVariateGaussian()))


def test_more_features_than_channels_is_refused_with_the_count() -> None:
    from inspection.training.backbones import resolve_weights
    from inspection.training.models import build_model

    config = load_model_config("padim", overrides=["n_features=200"])
    with pytest.raises(ConfigError, match=r"n_features: 200 exceeds the 152 channels of"):
        build_model(config, resolve_weights(config.backbone.name, "random"))


def test_padim_refuses_tiling() -> None:
    from inspection.core.tiling import TilingSpec
    from inspection.training.tiled import check_tiling

    config = load_model_config("padim", overrides=["image_size=[128, 128]"])
    with pytest.raises(ConfigError, match="use patchcore for a tiled product"):
        check_tiling(config, TilingSpec(tile_size=(128, 128), stride=(128, 128)))


def test_trained_padim_records_its_gaussians(padim: TrainedPadim) -> None:
    from inspection.training.train import load_trained_model

    record = padim.record
    assert record.model_kind == "padim" and record.config["n_features"] == N_FEATURES
    model = load_trained_model(record).model
    cells = (SIZE // 8) ** 2
    assert tuple(model.gaussian.mean.shape) == (N_FEATURES, cells)
    assert tuple(model.gaussian.inv_covariance.shape) == (cells, N_FEATURES, N_FEATURES)
    # every training image has an out-of-fold score from Gaussians that never saw it
    good = record.good_scores()
    assert good.folds == FOLDS and len(good.out_of_fold) == 24


def _train_embeddings(padim: TrainedPadim):
    """(model, train samples, (N, D, h, w) embeddings) of the trained tiny PaDiM."""
    from inspection.data.dataset import load_dataset
    from inspection.training.models.padim.gaussian import padim_embeddings
    from inspection.training.models.patchcore.out_of_fold import model_inputs
    from inspection.training.train import load_trained_model

    model = load_trained_model(padim.record)
    train = load_dataset(padim.dataset_root).train_samples
    return model, train, padim_embeddings(model.model, model_inputs(model, train, (SIZE, SIZE)))


def _sklearn_gaussian(embeddings, estimator) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D, cells) and precision (cells, D, D) of scikit-learn's estimator per cell."""
    n, dims = embeddings.shape[:2]
    cells = embeddings.reshape(n, dims, -1).permute(2, 0, 1).double().numpy()
    fitted = [estimator().fit(c) for c in cells]
    return (np.stack([f.location_ for f in fitted], axis=1),
            np.stack([f.precision_ for f in fitted]))  # fmt: skip


def test_served_gaussians_are_sklearns_ledoit_wolf(padim: TrainedPadim) -> None:
    """The trained model's per-cell mean and inverse covariance are scikit-learn's
    ``LedoitWolf`` fitted on the same training embeddings (and not anomalib's ridge)."""
    from anomalib.models.components import MultiVariateGaussian
    from sklearn.covariance import LedoitWolf

    model, _, embeddings = _train_embeddings(padim)
    mean, precision = _sklearn_gaussian(embeddings, LedoitWolf)
    served = model.model.gaussian
    np.testing.assert_allclose(served.mean.numpy(), mean, rtol=1e-4, atol=1e-5)
    scale = np.abs(precision).max()
    np.testing.assert_allclose(served.inv_covariance.numpy(), precision, atol=1e-3 * scale)
    ridge = MultiVariateGaussian()
    ridge.fit(embeddings)
    assert np.abs(ridge.inv_covariance.numpy() - precision).max() > 0.1 * scale


def test_out_of_fold_gaussians_use_the_served_estimator(padim: TrainedPadim) -> None:
    """Each recorded out-of-fold score is the one Gaussians from scikit-learn's LedoitWolf on
    the other folds give; anomalib's ridge Gaussians would give other scores."""
    import torch
    from anomalib.models.components import MultiVariateGaussian
    from sklearn.covariance import LedoitWolf

    from inspection.training.models.padim.gaussian import padim_scores
    from inspection.training.models.patchcore.out_of_fold import fold_of

    model, train, embeddings = _train_embeddings(padim)
    root = padim.dataset_root.resolve()
    recorded = padim.record.good_scores().out_of_fold
    oof = np.array([recorded[Path(s.path).resolve().relative_to(root).as_posix()] for s in train])
    assignment = fold_of(len(train), FOLDS, 0)
    for fold in range(FOLDS):
        rest, held = embeddings[assignment != fold], embeddings[assignment == fold]
        mean, precision = _sklearn_gaussian(rest, LedoitWolf)
        gaussian = MultiVariateGaussian()
        gaussian.mean = torch.from_numpy(mean).float()
        gaussian.inv_covariance = torch.from_numpy(precision).float()
        expected = padim_scores(model.model, held, gaussian, (SIZE, SIZE))
        np.testing.assert_allclose(oof[assignment == fold], expected, rtol=1e-3)
        ridge = MultiVariateGaussian()
        ridge.fit(rest)
        other = padim_scores(model.model, held, ridge, (SIZE, SIZE))
        assert np.abs(other - expected).max() > 0.05 * expected.max()


def test_out_of_fold_head_reproduces_the_model_scores(padim: TrainedPadim) -> None:
    """The fold scorer with the trained Gaussians gives the trained model's own scores, and
    a training image scores higher from Gaussians that never saw it."""
    from inspection.data.dataset import load_dataset
    from inspection.training.evaluate import predict
    from inspection.training.models.padim.gaussian import padim_embeddings, padim_scores
    from inspection.training.models.patchcore.out_of_fold import model_inputs
    from inspection.training.train import load_trained_model

    model = load_trained_model(padim.record)
    train = load_dataset(padim.dataset_root).train_samples[:6]
    embeddings = padim_embeddings(model.model, model_inputs(model, train, (SIZE, SIZE)))
    own = padim_scores(model.model, embeddings, model.model.gaussian, (SIZE, SIZE))
    expected = predict(model, train, image_size=(SIZE, SIZE)).scores
    np.testing.assert_allclose(own, expected, rtol=1e-4)
    root = padim.dataset_root
    oof = padim.record.good_scores().out_of_fold
    held_out = [oof[Path(s.path).resolve().relative_to(root.resolve()).as_posix()] for s in train]
    assert np.mean(held_out) > np.mean(own)


def test_fp32_bundle_matches_torch_at_pinned_f32(padim: TrainedPadim, images) -> None:
    """Raw outputs of the bundle graph, compiled with f32 pinned (any CPU default), vs torch."""
    import openvino as ov
    import torch

    from inspection.core.bundle import verify_bundle
    from inspection.runtime.preprocess import model_batch, preprocess
    from inspection.training.train import load_trained_model

    meta = verify_bundle(padim.bundle)
    assert meta.model_kind == "padim" and meta.inference_precision == "f32"
    batch = np.stack([preprocess(image, meta.preprocessing) for image in images])
    with torch.no_grad():
        expected = load_trained_model(padim.record).model(torch.from_numpy(batch))
    compiled = ov.Core().compile_model(
        str(padim.bundle / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )
    out = compiled(model_batch(images, meta.preprocessing))  # preprocessed in the graph
    scores, maps = out["pred_score"], out["anomaly_map"][:, 0]
    norm = meta.normalization
    np.testing.assert_allclose(
        scores,
        expected.pred_score.reshape(-1).numpy(),
        atol=1e-4 * (norm.image_max - norm.image_min),
    )
    np.testing.assert_allclose(
        maps, expected.anomaly_map[:, 0].numpy(), atol=1e-3 * (norm.pixel_max - norm.pixel_min)
    )


def test_station_inspects_with_the_bundle(padim: TrainedPadim, images) -> None:
    import torch

    from inspection.runtime.inspector import Inspector
    from inspection.runtime.preprocess import normalize_score, preprocess
    from inspection.training.train import load_trained_model

    inspector = Inspector.from_bundle(padim.bundle)
    model = load_trained_model(padim.record).model
    for image in images:
        result = inspector.inspect(image)
        tensor = torch.from_numpy(preprocess(image, inspector.metadata.preprocessing)[None])
        with torch.no_grad():
            raw = float(model(tensor).pred_score[0])
        norm = inspector.metadata.normalization
        assert result.score == pytest.approx(normalize_score(raw, norm), abs=1e-3)
        assert result.anomaly_map.shape == image.shape[:2]
        assert (result.verdict == "NG") == (result.score >= result.threshold)


def test_bundle_holds_one_inverse_covariance_per_cell(padim: TrainedPadim) -> None:
    """Size law for the README: the weights file carries cells x D x D float32."""
    cells = (SIZE // 8) ** 2
    assert (padim.bundle / "model.bin").stat().st_size >= cells * N_FEATURES**2 * 4


def test_int8_keeps_the_mahalanobis_head_in_fp32(padim: TrainedPadim) -> None:
    """Every op that reads the inverse covariances lies in the head NNCF must not quantise."""
    import openvino as ov

    from inspection.training.quantize import distance_head

    model = ov.Core().read_model(padim.bundle / "model.xml")
    head = set(distance_head(model))
    cells = (SIZE // 8) ** 2
    readers = [
        target.get_node().get_friendly_name()
        for op in model.get_ordered_ops()
        if op.get_type_name() == "Constant"
        and tuple(op.get_output_shape(0)) == (cells, N_FEATURES, N_FEATURES)
        for target in op.output(0).get_target_inputs()
    ]
    assert readers and all(name in head for name in readers)
