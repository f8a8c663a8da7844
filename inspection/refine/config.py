"""Typed, frozen refinement config from ``refine.yaml`` (``configs/refine.yaml`` documents
each key), read once when a command starts, so a bad key stops it with one line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from inspection.core.bundle import Precision
from inspection.core.config import default_configs_dir, from_mapping, read_yaml
from inspection.core.errors import ConfigError

REFINE_CONFIG_NAME = "refine.yaml"


@dataclass(frozen=True)
class PromptConfig:
    """How anomaly-map regions become SAM prompts (``refine.prompts``; pixels)."""

    min_region_area: int = 4
    box_pad_px: int = 2
    box_pad_fraction: float = 0.1
    num_positive: int = 2
    peak_min_distance: int = 3
    num_negative: int = 2
    negative_offset_px: int = 4
    negative_max_score: float = 0.2


@dataclass(frozen=True)
class GuardConfig:
    """When a refined region mask is trusted over the raw thresholded one (``refine.guards``)."""

    neighbourhood_px: int = 8
    neighbourhood_fraction: float = 0.5
    max_outside_fraction: float = 0.2
    min_area_ratio: float = 0.1
    max_area_ratio: float = 4.0
    max_image_fraction: float = 0.3
    min_predicted_iou: float = 0.7


@dataclass(frozen=True)
class ClassicalConfig:
    """Seeds for GrabCut / random walker: sure foreground inside the raw region where map >=
    thr + sure_fg_level * (region max - thr), probable foreground above thr, probable background
    >= sure_bg_fraction * thr, sure background the rest of the crop. ``max_crop_pixels``: a
    larger crop is segmented shrunk to this many (a region's cost stays bounded)."""

    sure_fg_level: float = 0.5
    sure_bg_fraction: float = 0.7
    margin_px: int = 16
    margin_fraction: float = 0.25
    grabcut_iterations: int = 2
    random_walker_beta: float = 50.0
    seed: int = 0
    max_crop_pixels: int = 65_536

    def __post_init__(self) -> None:
        if self.max_crop_pixels < 64:
            raise ValueError(f"max_crop_pixels must be >= 64, got {self.max_crop_pixels}")


@dataclass(frozen=True)
class SamConfig:
    """The SAM refiner: ``checkpoint``, the weights ``inspection refine export-sam`` exports
    into the refiner ``bundle`` a station loads."""

    backend: Literal["vit_t", "vit_b"] = "vit_t"
    checkpoint: Path | None = None
    bundle: Path | None = None
    precision: Precision = "fp32"
    budget_ms: float = 1500.0
    multimask: bool = False
    allow_random_weights: bool = False
    num_threads: int = 0
    inference_precision: Literal["f32", "bf16"] = "f32"


@dataclass(frozen=True)
class RefineConfig:
    """``method``: which refiner ``build_refiner`` makes; "auto" = SAM when a bundle is
    configured, else GrabCut."""

    method: Literal["auto", "none", "grabcut", "random_walker", "sam"] = "auto"
    prompts: PromptConfig = field(default_factory=PromptConfig)
    guards: GuardConfig = field(default_factory=GuardConfig)
    classical: ClassicalConfig = field(default_factory=ClassicalConfig)
    sam: SamConfig = field(default_factory=SamConfig)


def refine_config_in(configs_dir: Path | None = None) -> RefineConfig:
    """``refine.yaml`` of ``configs_dir`` (a site's configs folder, ``SiteConfig.configs``;
    default ``core.config.default_configs_dir()``), or the defaults when it has none."""
    path = (configs_dir or default_configs_dir()) / REFINE_CONFIG_NAME
    return load_refine_config(path) if path.is_file() else RefineConfig()


def load_refine_config(path: str | Path | None = None) -> RefineConfig:
    """Load the refine config at ``path``; ``None``: ``refine_config_in()``."""
    if path is None:
        return refine_config_in()
    data = read_yaml(path)
    unknown = sorted(set(data) - {"refine"})
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {unknown}; expected only 'refine'")
    return from_mapping(RefineConfig, data.get("refine"), where=f"{path}: refine")
