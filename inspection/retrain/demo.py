"""A demo or test champion for retraining runs (``bench/fleet.py``, ``tests/retrain``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from inspection.core.registry import Registry
from inspection.data.dataset import load_dataset

if TYPE_CHECKING:
    from inspection.core.product_config import ModelConfig


def train_champion(
    config: ModelConfig, data: Path, *, product: str, registry: Registry, actor: str
) -> str:
    """Train ``config`` on the dataset at ``data`` and promote its INT8 bundle as the live
    champion (export gate forced: a demo or test champion need not be good). Its bundle id."""
    # deferred: torch (the training side)
    from inspection.training.export import ExportOptions
    from inspection.training.registry_export import RegistryExport, export_bundle
    from inspection.training.train import train

    train(config, load_dataset(data), product=product, registry=registry, progress=False)
    return export_bundle(
        registry,
        product,
        ExportOptions(precision="int8", force=True),
        RegistryExport(promote=True, actor=actor),
    ).bundle_id
