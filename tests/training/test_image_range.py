"""A product's ``image_range`` (height maps, depth, float images): carried by the model config
into the record's preprocessing (the bundle's ``source_range``) and applied where training and
the station read."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from inspection.core.bundle import Preprocessing
from inspection.core.config import from_mapping, to_mapping
from inspection.core.errors import ConfigError, DatasetError, ImageDecodeError
from inspection.core.product_config import load_model_config
from inspection.data.dataset import Sample
from inspection.runtime.paths import iter_paths
from inspection.training.backbones import ResolvedWeights
from inspection.training.samples import SampleDataset, load_image
from inspection.training.train import station_preprocessing
from tests.runtime.test_source_bits import SeeingInspector

HEIGHTS = np.linspace(-300, 300, 64 * 64).reshape(64, 64).astype(np.int16)
EXPECTED = np.rint((HEIGHTS.astype(float) + 1000) * 255 / 2000).astype(np.uint8)


def test_the_record_preprocessing_carries_the_range_as_source_range() -> None:
    config = load_model_config("patchcore", overrides=["image_range=[-1000, 1000]"])
    weights = ResolvedWeights("b", "random", "", (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    prep = station_preprocessing(config, weights)
    assert prep.source_range == (-1000.0, 1000.0)
    assert from_mapping(Preprocessing, to_mapping(prep)) == prep
    legacy = {"input_size": [64, 64], "mean": [0, 0, 0], "std": [1, 1, 1]}
    assert from_mapping(Preprocessing, legacy).source_range is None
    with pytest.raises(ConfigError, match="source_range: the range"):
        from_mapping(Preprocessing, {**legacy, "source_range": [3, 1]}, where="metadata.json")


def test_training_and_the_station_read_a_height_map_over_the_declared_range(
    tmp_path: Path,
) -> None:
    path = tmp_path / "height.tiff"
    cv2.imwrite(str(path), HEIGHTS)
    trained = load_image(path, (64, 64), value_range=(-1000.0, 1000.0))
    assert np.array_equal(np.rint(trained[:, :, 0] * 255).astype(np.uint8), EXPECTED)
    with pytest.raises(ImageDecodeError, match=r"set image_range: \[low, high\]"):
        load_image(path, (64, 64))
    pytest.importorskip("anomalib")
    item = SampleDataset([Sample(path, "train", 0, "good")], (64, 64), 16, (-1000.0, 1000.0))[0]
    assert np.array_equal(item.image.numpy(), trained.transpose(2, 0, 1))

    declared = SeeingInspector(_metadata(source_range=(-1000.0, 1000.0)))
    list(iter_paths(declared, [path]))
    assert np.array_equal(declared.seen[0][:, :, 0], EXPECTED)
    (refused,) = iter_paths(SeeingInspector(_metadata()), [path])  # an older bundle
    assert refused.error.startswith(f"{path}: a signed 16-bit image")


def _metadata(source_range: tuple[float, float] | None = None) -> object:
    prep = Preprocessing((64, 64), (0.5,) * 3, (0.25,) * 3, source_range=source_range)
    return SimpleNamespace(preprocessing=prep, tiling=None)


def test_training_refuses_a_height_map_product_without_a_range_before_the_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from inspection.cli.train import checked_dataset

    root = tmp_path / "gauge"
    for split, count in (("train/good", 3), ("test/good", 2)):
        (root / split).mkdir(parents=True)
        for i in range(count):
            cv2.imwrite(
                str(root / split / f"{i}.tiff"), HEIGHTS + 60 * i + 300 * (split == "test/good")
            )
    with pytest.raises(DatasetError) as info:
        checked_dataset(root)
    message = str(info.value)
    assert message.startswith("5 file(s) cannot be trained on: ")
    assert f"{root.resolve()}/train/good/0.tiff: image: a signed 16-bit image" in message
    assert "set image_range: [low, high]" in message
    assert len(checked_dataset(root, image_range=(-1000.0, 1000.0)).samples) == 5
