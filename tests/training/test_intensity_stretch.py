"""Training stretches each image as the station does (``intensity_percentiles``): the model
input made by the training pre-processor equals the station's, and tiling refuses it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from inspection.core.errors import ConfigError
from inspection.core.product_config import load_model_config
from inspection.core.tiling import TilingSpec
from inspection.runtime.preprocess import model_input
from inspection.training.backbones import ResolvedWeights
from inspection.training.train import station_preprocessing

pytest.importorskip("anomalib")

WEIGHTS = ResolvedWeights("b", "random", "", (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def _cells() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    grey = rng.integers(20, 200, (3, 64, 64, 1)) * np.array([1.0, 0.5, 1.2])[:, None, None, None]
    return list(np.clip(grey, 0, 255).astype(np.uint8).repeat(3, axis=3))


@pytest.mark.parametrize("percentiles", [None, (1.0, 99.0)])
def test_the_training_pre_processor_makes_the_station_s_model_input(percentiles) -> None:
    import torch
    from torchvision.tv_tensors import Image, Mask

    from inspection.training.models.common import anomalib_options

    overrides = ["image_size=[64, 64]"]
    if percentiles is not None:
        overrides.append(f"intensity_percentiles={list(percentiles)}")
    config = load_model_config("patchcore", overrides=overrides)
    prep = dataclasses.replace(station_preprocessing(config, WEIGHTS), in_graph=False)
    assert prep.intensity_percentiles == percentiles
    cells = _cells()
    station = np.stack([model_input(cell, prep) for cell in cells])
    batch = Image(torch.from_numpy(np.stack(cells)).permute(0, 3, 1, 2).float() / 255)
    mask = Mask(torch.ones(3, 64, 64, dtype=torch.bool))
    pre_processor = anomalib_options(config, WEIGHTS)["pre_processor"]
    trained, kept = pre_processor.transform(batch, mask)
    np.testing.assert_allclose(trained.numpy(), station, atol=1e-5)
    assert torch.equal(kept, mask)
    spread = [float(np.ptp(image)) for image in station]  # cells of 3 brightness levels
    assert (max(spread) - min(spread) < 0.1) == (percentiles is not None)


def test_a_tiled_model_refuses_the_stretch() -> None:
    from inspection.training.tiled import check_tiling

    config = load_model_config(
        "patchcore", overrides=["image_size=[64, 64]", "intensity_percentiles=[1, 99]"]
    )
    with pytest.raises(ConfigError, match="intensity_percentiles: not with tiling"):
        check_tiling(config, TilingSpec(tile_size=(64, 64), stride=(64, 64)))


@pytest.mark.slow
def test_a_stretched_model_s_bundle_scores_dim_cells_as_the_trained_model(
    tiny_product, tmp_path
) -> None:
    import cv2
    import torch

    from inspection.core.images import read_image
    from inspection.core.product_config import model_config_from_mapping
    from inspection.core.registry import Registry
    from inspection.data.dataset import load_dataset
    from inspection.runtime.inspector import Inspector
    from inspection.runtime.preprocess import model_batch
    from inspection.training.export import ExportOptions
    from inspection.training.registry_export import RegistryExport, export_bundle
    from inspection.training.samples import load_image
    from inspection.training.train import load_trained_model, train
    from tests.conftest import TINY_PATCHCORE

    config = model_config_from_mapping({**TINY_PATCHCORE, "intensity_percentiles": [1, 99]})
    registry = Registry(tmp_path / "registry")
    record = train(config, load_dataset(tiny_product), product="brick", registry=registry,
                   progress=False)  # fmt: skip
    source = RegistryExport(version=record.version)
    bundle = export_bundle(registry, "brick", ExportOptions(precision="fp32"), source).bundle_dir
    inspector = Inspector.from_bundle(bundle)
    prep = inspector.metadata.preprocessing
    assert prep.intensity_percentiles == (1.0, 99.0)

    paths = []
    for index, path in enumerate(sorted((tiny_product / "test").rglob("*.png"))[::4][:4]):
        dim = tmp_path / f"dim{index}.png"
        cv2.imwrite(str(dim), cv2.imread(str(path)) // (2 + index % 2))  # half and a third
        paths.append(dim)
    served = inspector.model.infer(model_batch([read_image(p) for p in paths], prep)).scores
    model = load_trained_model(record)
    images = np.stack([load_image(p, (64, 64)) for p in paths]).transpose(0, 3, 1, 2)
    with torch.no_grad():
        trained = model.model(model.pre_processor(torch.from_numpy(images))).pred_score
    norm = inspector.metadata.normalization
    np.testing.assert_allclose(
        served, trained.reshape(-1).numpy(), atol=1e-4 * (norm.image_max - norm.image_min)
    )
