"""Session fixtures: a tiny PatchCore trained on ``tiny_product`` and its FP32 bundle.

Shared with other areas (service, retrain) once moved to the root conftest; keep them small:
64 px input, a few training images, the bundled offline EfficientNet-Lite0 weights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from inspection.core.registry import ModelRecord, Registry

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY_PATCHCORE = {
    "kind": "patchcore",
    "image_size": [64, 64],
    "batch_size": 8,
    "coreset_sampling_ratio": 0.1,
    "num_neighbors": 3,
    "val_fraction": 0.3,
}


@dataclass(frozen=True)
class TrainedProduct:
    """A registry holding one trained version of ``product`` and the dataset it came from."""

    registry: Registry
    product: str
    record: ModelRecord
    dataset_root: Path


@pytest.fixture(scope="session")
def trained_patchcore(
    tiny_product: Path, tmp_path_factory: pytest.TempPathFactory
) -> TrainedProduct:
    """A tiny PatchCore (64 px) trained on ``tiny_product`` into a fresh registry."""
    from inspection.data.dataset import load_dataset
    from inspection.training.config import model_config_from_mapping
    from inspection.training.train import train

    registry = Registry(tmp_path_factory.mktemp("registry"))
    config = model_config_from_mapping(TINY_PATCHCORE, where="tests TINY_PATCHCORE")
    record = train(
        config, load_dataset(tiny_product), product="brick", registry=registry, progress=False
    )
    return TrainedProduct(registry, "brick", record, tiny_product)


@pytest.fixture(scope="session")
def fp32_bundle(trained_patchcore: TrainedProduct) -> Path:
    """The FP32 OpenVINO bundle of ``trained_patchcore``, registered as ``v0001-fp32``."""
    from inspection.training.export import export_bundle

    tp = trained_patchcore
    result = export_bundle(tp.registry, tp.product, precision="fp32", version=tp.record.version)
    return result.bundle_dir


@pytest.fixture(scope="session")
def fp16_bundle(trained_patchcore: TrainedProduct) -> Path:
    """The FP16 bundle of ``trained_patchcore`` (``v0001-fp16``)."""
    from inspection.training.export import export_bundle

    tp = trained_patchcore
    result = export_bundle(tp.registry, tp.product, precision="fp16", version=tp.record.version)
    return result.bundle_dir
