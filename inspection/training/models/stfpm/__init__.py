"""STFPM: a student network taught to match a pretrained teacher on good images."""

from __future__ import annotations

from inspection.core.product_config import ModelConfig
from inspection.training.backbones import ResolvedWeights, apply_weights, no_pretrained_download
from inspection.training.models.common import ModelKind, anomalib_options
from inspection.training.models.stfpm.lightning_model import Stfpm


def build(config: ModelConfig, weights: ResolvedWeights) -> Stfpm:
    """An untrained ``Stfpm``: ``weights`` in the teacher, the student random."""
    with no_pretrained_download():  # anomalib asks timm for a pretrained teacher
        model = Stfpm(**anomalib_options(config, weights))
    apply_weights(model.model.teacher_model.feature_extractor, weights)
    return model


KIND = ModelKind("stfpm", build)
