"""One folder per model kind, as anomalib keeps its models: each holds its builder (``build``)
and the steps that are its own after the fit (``patchcore``: coreset, local statistics, image
score, out-of-fold scores, bank collection; ``mixed``: PatchCore's supervised head learned
from labelled defects; ``stfpm``: ROI-masked loss; ``padim``: covariance estimators and
out-of-fold scores).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from inspection.core.errors import ConfigError
from inspection.core.product_config import ModelConfig
from inspection.training.backbones import ResolvedWeights, feature_layers
from inspection.training.models import mixed, padim, stfpm

MODEL_BUILDERS: dict[str, Callable[[ModelConfig, ResolvedWeights], Any]] = {
    "patchcore": mixed.build,  # PatchCore, with the mixed model's head where supervised
    "stfpm": stfpm.build,
    "padim": padim.build,
}


def build_model(config: ModelConfig, weights: ResolvedWeights) -> Any:
    """An untrained anomalib model of ``config.kind`` with ``weights`` in its backbone."""
    builder = MODEL_BUILDERS.get(config.kind)
    if builder is None:
        raise ValueError(
            f"unknown model kind {config.kind!r}; valid kinds: {', '.join(MODEL_BUILDERS)}"
        )
    check_layers(config)
    return builder(config, weights)


def check_layers(config: ModelConfig) -> None:
    """anomalib silently drops unknown layer names; we refuse them with the valid ones."""
    available = feature_layers(config.backbone.name)
    unknown = [layer for layer in config.backbone.layers if layer not in available]
    if unknown:
        valid = ", ".join(f"{name} (stride {stride})" for name, stride in available.items())
        raise ConfigError(
            f"backbone.layers: {unknown} not in {config.backbone.name}; valid layers: {valid}"
        )
