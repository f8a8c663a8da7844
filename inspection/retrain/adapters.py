"""The one place where retraining calls the training side (train, export, configs); torch is
imported lazily, so ``inspection.retrain`` itself imports fast."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspection.core.config import deep_merge
from inspection.core.model_record import ModelRecord
from inspection.core.product_config import (
    load_product_config,
    model_config_from_mapping,
    parse_override,
)
from inspection.core.registry import Registry
from inspection.data.dataset import load_dataset
from inspection.refine.config import RefineConfig
from inspection.retrain.config import ChallengerExport

if TYPE_CHECKING:
    from inspection.training.export import ExportResult

log = logging.getLogger(__name__)


def challenger_config(
    source: ModelRecord, overrides: Iterable[str] = (), replace: Mapping[str, Any] | None = None
) -> Any:
    """The champion's ``ModelConfig`` with ``--set``-style ``overrides`` (and a full ``replace``)."""
    data: dict[str, Any] = dict(source.config)
    for item in overrides:
        data = deep_merge(data, parse_override(item))
    if replace:
        data = deep_merge(data, dict(replace))
    return model_config_from_mapping(data, where=f"challenger config (from {source.model_version})")


def train_challenger(
    config: Any,
    dataset_root: Path,
    *,
    product: str,
    registry: Registry,
    progress: bool,
    configs_dir: Path | None = None,
) -> ModelRecord:
    """Train on the run's folder and register a version (ROI: the product's in ``configs_dir``)."""
    # deferred: torch (the training side)
    from inspection.training.train import train

    return train(
        config, load_dataset(dataset_root), product=product, registry=registry,
        progress=progress, roi=load_product_config(product, configs_dir).roi,
    )  # fmt: skip


def memory_bank(kind: str) -> bool:
    """Whether ``kind``'s bank of good rows can be extended by new good images without a refit."""
    from inspection.training.models import model_kind  # deferred: torch (the training side)

    return model_kind(kind).memory_bank


def update_challenger(
    registry: Registry, champion: ModelRecord, images: list[Path], dataset_root: Path
) -> ModelRecord:
    """The champion's memory bank plus ``images``' patches, as a new version (lineage)."""
    # deferred: torch (the training side)
    from inspection.training.incremental import update_bank

    outcome = update_bank(
        registry, champion.product, images, version=champion.version,
        dataset=load_dataset(dataset_root),
    )  # fmt: skip
    return outcome.record


def export_challenger(
    registry: Registry,
    record: ModelRecord,
    dataset_root: Path,
    export: ChallengerExport,
    *,
    progress: Callable[[str], None] | None = None,
    configs_dir: Path | None = None,
    refine: RefineConfig | None = None,
) -> tuple[ExportResult | None, dict[str, str]]:
    """Export ``record`` as ``inspection demo`` does (``export_gated``); returns (the first of
    ``export.precisions`` whose gate passed, else None; why each other was not registered)."""
    # deferred: torch (the training side)
    from inspection.training.export import ExportOptions
    from inspection.training.registry_export import RegistryExport, export_gated

    gated = export_gated(
        registry, record.product, export.precisions,  # type: ignore[arg-type]
        RegistryExport(record.version, dataset_root, configs_dir=configs_dir),
        ExportOptions(tolerances=export.tolerances, refine=refine or RefineConfig()),
        progress=progress,
    )  # fmt: skip
    return gated.preferred(export.precisions), gated.refused
