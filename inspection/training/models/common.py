"""What every model kind's builder shares: the anomalib constructor options of a config."""

from __future__ import annotations

from typing import Any

from anomalib.pre_processing import PreProcessor
from torchvision.transforms.v2 import Compose, Normalize, Resize

from inspection.core.product_config import ModelConfig
from inspection.training.backbones import ResolvedWeights


def anomalib_options(config: ModelConfig, weights: ResolvedWeights) -> dict[str, Any]:
    """The backbone and layers of ``config``, a pre-processor that resizes to its
    ``image_size`` and normalises with the weights' mean and std, and no evaluator or
    visualizer (metrics and figures are ours)."""
    resize = Resize(list(config.image_size), antialias=True)
    normalize = Normalize(mean=list(weights.mean), std=list(weights.std))
    return {
        "backbone": config.backbone.name,
        "layers": list(config.backbone.layers),
        "pre_processor": PreProcessor(transform=Compose([resize, normalize])),
        "evaluator": False,
        "visualizer": False,
    }
