"""A product's ``image_bits``: validated in its YAML, carried by the model config into the
record's preprocessing (the bundle's ``source_bits``), and applied where training reads."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from inspection.core.bundle import Preprocessing
from inspection.core.config import from_mapping, to_mapping
from inspection.core.errors import ConfigError
from inspection.core.product_config import load_model_config, load_product_config
from inspection.data.dataset import Sample
from inspection.training.backbones import ResolvedWeights
from inspection.training.samples import SampleDataset, load_image
from inspection.training.train import station_preprocessing

TWELVE_BIT = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 4096).astype(np.uint16)


def _product(tmp_path: Path, text: str) -> Path:
    (tmp_path / "products").mkdir(exist_ok=True)
    path = tmp_path / "products" / "widget.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_product_declares_its_image_bits(tmp_path: Path) -> None:
    _product(tmp_path, "image_bits: 12\n")
    assert load_product_config("widget", tmp_path).image_bits == 12
    assert load_product_config("gadget", tmp_path).image_bits == 16  # no file: the high byte


@pytest.mark.parametrize("value", ["7", "17", "0", "twelve", "12.5", "true"])
def test_image_bits_outside_8_to_16_is_refused_naming_file_and_key(
    tmp_path: Path, value: str
) -> None:
    path = _product(tmp_path, f"image_bits: {value}\n")
    with pytest.raises(ConfigError) as info:
        load_product_config("widget", tmp_path)
    assert str(info.value).startswith(f"{path}")
    assert "image_bits" in str(info.value)


def test_the_model_config_takes_the_products_bits(tmp_path: Path) -> None:
    _product(tmp_path, "image_bits: 12\nmodels: {patchcore: {batch_size: 3}}\n")
    config = load_model_config("patchcore", product="widget", directory=tmp_path)
    assert (config.image_bits, config.batch_size) == (12, 3)
    assert load_model_config("patchcore").image_bits == 16
    with pytest.raises(ConfigError, match=r"image_bits: .*integer from 8 to 16"):
        load_model_config("patchcore", overrides=["image_bits=20"])


def test_the_record_preprocessing_carries_the_bits_as_source_bits() -> None:
    config = load_model_config("patchcore", overrides=["image_bits=12"])
    weights = ResolvedWeights("b", "random", "", (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    prep = station_preprocessing(config, weights)
    assert prep.source_bits == 12
    assert from_mapping(Preprocessing, to_mapping(prep)) == prep


def test_older_preprocessing_records_read_at_16_bits_and_bad_ones_are_refused() -> None:
    legacy = {"input_size": [64, 64], "mean": [0, 0, 0], "std": [1, 1, 1]}
    assert from_mapping(Preprocessing, legacy).source_bits == 16
    with pytest.raises(ConfigError, match="source_bits"):
        from_mapping(Preprocessing, {**legacy, "source_bits": 4}, where="metadata.json")


def test_training_reads_a_12_bit_image_as_its_8_bit_equivalent(tmp_path: Path) -> None:
    deep, eight = tmp_path / "deep.png", tmp_path / "eight.png"
    cv2.imwrite(str(deep), TWELVE_BIT)
    cv2.imwrite(str(eight), (TWELVE_BIT >> 4).astype(np.uint8))
    assert np.array_equal(load_image(deep, (32, 32), 12), load_image(eight, (32, 32)))
    samples = [Sample(deep, "train", 0, "good"), Sample(eight, "train", 0, "good")]
    pytest.importorskip("anomalib")
    items = SampleDataset(samples, (32, 32), bits=12)
    assert np.array_equal(items[0].image.numpy(), items[1].image.numpy())
    assert float(SampleDataset(samples, (32, 32))[0].image.max()) < 16 / 255  # the old reading
