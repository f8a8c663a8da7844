"""Tiled training: the station's tile grid, and one tiny train -> export -> inspect run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inspection.core.errors import ConfigError
from inspection.core.images import read_image
from inspection.core.product_config import model_config_from_mapping
from inspection.core.registry import Registry
from inspection.core.tiling import TilingSpec, cut
from inspection.data.dataset import load_dataset
from inspection.training.tiled import TileDataset, check_tiling, train_tiled


@pytest.mark.parametrize(("size", "tile", "stride"), [(128, 64, 64), (128, 64, 32), (96, 32, 16)])
def test_station_grid_equals_anomalib_tiler_where_the_image_divides(size, tile, stride) -> None:
    from anomalib.data.utils.tiler import Tiler

    image = np.random.default_rng(0).random((3, size, size), dtype=np.float32)
    ours = cut(
        image, TilingSpec((tile, tile), (stride, stride)).grid(size, size), channels_first=True
    )
    theirs = Tiler(tile_size=tile, stride=stride).tile(torch.from_numpy(image)[None]).numpy()
    np.testing.assert_array_equal(ours, theirs)


def test_tile_dataset_labels_tiles_by_their_mask(tiny_product) -> None:
    dataset = load_dataset(tiny_product)
    defective = next(s for s in dataset.test_samples if s.label == 1 and s.mask_path)
    tiles = TileDataset([defective], TilingSpec((64, 64), (32, 32)))
    assert len(tiles) == 9
    items = [tiles[i] for i in range(len(tiles))]
    assert items[0].image.shape == (3, 64, 64)
    labels = [int(item.gt_label) for item in items]
    assert labels == [int(item.gt_mask.any()) for item in items] and any(labels)


def test_tile_size_must_be_the_model_input() -> None:
    config = model_config_from_mapping({"kind": "patchcore", "image_size": [64, 64]})
    with pytest.raises(ConfigError, match=r"tiling.tile_size \[32, 32\] must equal"):
        check_tiling(config, TilingSpec((32, 32), (32, 32)))


@pytest.mark.slow
def test_tiled_train_export_inspect_end_to_end(tiny_product, tmp_path) -> None:
    from inspection.runtime.tiled import TiledInspector
    from inspection.training.export import ExportOptions
    from inspection.training.registry_export import RegistryExport, export_bundle

    spec = TilingSpec((64, 64), (64, 64), scale=1.0, blend="mean")
    config = model_config_from_mapping(
        {"kind": "patchcore", "image_size": [64, 64], "coreset_sampling_ratio": 0.05,
         "num_neighbors": 3, "memory_bank_max": 512, "val_fraction": 0.3,
         # two validation good parts cannot carry a 1 % budget: this test is about tiling
         "operating_point": {"policy": "f1"}},
    )  # fmt: skip
    registry = Registry(tmp_path / "registry")
    dataset = load_dataset(tiny_product)
    record = train_tiled(
        config, spec, dataset, product="brick", registry=registry, progress=False, evaluate=False
    )
    assert record.tiling() == spec and record.extra["train_tiles"] == 4 * len(dataset.train_samples)
    result = export_bundle(
        registry, "brick", ExportOptions(precision="fp32"), RegistryExport(version=record.version)
    )
    assert result.metadata.tiling == spec
    assert (result.metadata.evaluation().image_auroc or 0.0) > 0.5
    tiled = TiledInspector.from_bundle(result.bundle_dir)
    sample = next(s for s in dataset.test_samples if s.label == 1)
    image = read_image(sample.path)
    inspected = tiled.inspect(image)
    assert inspected.anomaly_map.shape == image.shape[:2]
    for region in inspected.regions:
        assert region.box[2] <= image.shape[1] and region.box[3] <= image.shape[0]
