"""One folder per model kind, as anomalib keeps its models: each defines its ``KIND``
(``common.ModelKind``) and holds the steps that are its own; ``KINDS`` registers them by name.
"""

from __future__ import annotations

from typing import Any

from inspection.core.errors import ConfigError
from inspection.core.product_config import ModelConfig
from inspection.training.backbones import ResolvedWeights, feature_layers
from inspection.training.models import mixed, padim, stfpm
from inspection.training.models.common import ModelKind

KINDS: dict[str, ModelKind] = {kind.name: kind for kind in (mixed.KIND, stfpm.KIND, padim.KIND)}
"""Every model kind by name (``core.product_config.MODEL_KINDS`` holds their own options)."""


def model_kind(name: str) -> ModelKind:
    """The registered kind ``name``, else ``ValueError`` listing the valid ones."""
    kind = KINDS.get(name)
    if kind is None:
        raise ValueError(f"unknown model kind {name!r}; valid kinds: {', '.join(KINDS)}")
    return kind


def build_model(config: ModelConfig, weights: ResolvedWeights) -> Any:
    """An untrained anomalib model of ``config.kind`` with ``weights`` in its backbone."""
    kind = model_kind(config.kind)
    check_layers(config)
    return kind.build(config, weights)


def check_layers(config: ModelConfig) -> None:
    """anomalib silently drops unknown layer names; we refuse them with the valid ones."""
    available = feature_layers(config.backbone.name)
    unknown = [layer for layer in config.backbone.layers if layer not in available]
    if unknown:
        valid = ", ".join(f"{name} (stride {stride})" for name, stride in available.items())
        raise ConfigError(
            f"backbone.layers: {unknown} not in {config.backbone.name}; valid layers: {valid}"
        )
