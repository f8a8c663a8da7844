"""Defect-mask refinement (torch-free): prompts from anomaly maps, classical and SAM refiners.
``build_refiner(refine_config_in(site.configs))`` gives a ``MaskRefiner`` for an Inspector; the
SAM refiner (openvino) loads only when asked for.
"""

from inspection.refine.base import MaskRefiner
from inspection.refine.config import RefineConfig, load_refine_config, refine_config_in
from inspection.refine.factory import REFINERS, build_refiner

__all__ = [
    "REFINERS",
    "MaskRefiner",
    "RefineConfig",
    "build_refiner",
    "load_refine_config",
    "refine_config_in",
]
