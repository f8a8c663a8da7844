"""PaDiM: one Gaussian per grid cell of the backbone's feature map, Mahalanobis scores."""

from __future__ import annotations

from anomalib.models import Padim

from inspection.core.errors import ConfigError
from inspection.core.product_config import ModelConfig
from inspection.training.backbones import (
    ResolvedWeights,
    apply_weights,
    feature_channels,
    no_pretrained_download,
)
from inspection.training.models.common import ModelKind, anomalib_options
from inspection.training.models.padim.gaussian import PadimGaussian, out_of_fold_scores


def build(config: ModelConfig, weights: ResolvedWeights) -> Padim:
    """anomalib's PaDiM with ``covariance``'s estimator (``PadimGaussian``); ``n_features`` None
    keeps every channel (anomalib needs the number for backbones it has no default for)."""
    channels = sum(
        feature_channels(config.backbone.name)[layer] for layer in config.backbone.layers
    )
    n_features = config.n_features or channels
    if n_features > channels:
        raise ConfigError(
            f"n_features: {n_features} exceeds the {channels} channels of "
            f"{list(config.backbone.layers)} in {config.backbone.name}"
        )
    with no_pretrained_download():
        model = Padim(**anomalib_options(config, weights), pre_trained=False, n_features=n_features)
    apply_weights(model.model.feature_extractor.feature_extractor, weights)
    model.model.gaussian = PadimGaussian(config.covariance)
    return model


KIND = ModelKind(
    "padim",
    build,
    out_of_fold_scores=out_of_fold_scores,
    tiling_refusal="padim models each grid cell of the whole image with its own Gaussian; "
    "tiles from different places would share those cells: use patchcore for a tiled product",
)
