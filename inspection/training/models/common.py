"""What every model kind's builder shares: anomalib's pre-processor for a config's input."""

from __future__ import annotations

from anomalib.pre_processing import PreProcessor
from torchvision.transforms.v2 import Compose, Normalize, Resize

from inspection.core.product_config import ModelConfig
from inspection.training.backbones import ResolvedWeights


def pre_processor(config: ModelConfig, weights: ResolvedWeights) -> PreProcessor:
    """Resize to ``config.image_size`` and normalise with the backbone weights' mean and std."""
    resize = Resize(list(config.image_size), antialias=True)
    normalize = Normalize(mean=list(weights.mean), std=list(weights.std))
    return PreProcessor(transform=Compose([resize, normalize]))
