"""A demo or test champion for retraining runs (``bench/fleet.py``, ``tests/retrain``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from inspection.core.errors import BundleError
from inspection.core.registry import Registry
from inspection.data.dataset import load_dataset
from inspection.retrain.adapters import export_challenger
from inspection.retrain.config import ChallengerExport

if TYPE_CHECKING:
    from inspection.core.product_config import ModelConfig


def train_champion(
    config: ModelConfig,
    data: Path,
    *,
    product: str,
    registry: Registry,
    actor: str,
    export: ChallengerExport | None = None,
) -> str:
    """Train ``config`` on the dataset at ``data`` and promote its bundle, exported as a
    challenger is (``export``, never forced), as the live champion; returns its bundle id."""
    # deferred: torch (the training side)
    from inspection.training.train import train

    record = train(config, load_dataset(data), product=product, registry=registry, progress=False)
    bundle, refused = export_challenger(registry, record, data, export or ChallengerExport())
    if bundle is None:
        raise BundleError(f"no export gate passed {record.model_version}: {refused}")
    registry.journal.promote(product, bundle.bundle_id, actor=actor, reason="retrain demo champion")
    return bundle.bundle_id
