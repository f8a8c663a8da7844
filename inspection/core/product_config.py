"""Model training configs: YAML layers loaded into frozen, validated dataclasses.

Later layers win: ``models/<kind>.yaml`` of the site's configs folder (else the checkout's), the
product's ``models.<kind>`` section, ``--config FILE`` and ``--set key=value`` (dotted keys, YAML
values). Unknown keys and kinds are refused by name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml

from inspection.core.alignment import AlignmentSpec
from inspection.core.config import (
    CHECKOUT_CONFIGS,
    deep_merge,
    default_configs_dir,
    from_mapping,
    read_yaml,
    to_mapping,
)
from inspection.core.errors import ConfigError
from inspection.core.global_context import GLOBAL_COMPONENTS
from inspection.core.images import DEFAULT_SOURCE_BITS, check_source_bits, check_value_range
from inspection.core.input_domain import DomainTolerance
from inspection.core.operating_point import DEFAULT_VAL_FRACTION, OperatingPoint
from inspection.core.roi import RoiSpec
from inspection.core.tiling import TilingSpec
from inspection.core.units import PhysicalUnits

MODEL_KINDS: dict[str, dict[str, str]] = {
    # each kind (``training.models.KINDS``) with the options it alone reads, and why: another
    # kind's config leaves them at their default
    "patchcore": {
        "image_score": "only a patchcore model chooses its image score",
        "bank_augment": "only a patchcore model has a memory bank",
        "supervised": "the mixed model's head fuses with a patchcore model",
    },
    "stfpm": {},
    "padim": {
        "n_features": "only a padim model keeps a channel subset",
        "covariance": "only a padim model fits Gaussians",
    },
}
# PaDiM's covariance per cell: sample covariance + 0.01 I (anomalib's), LedoitWolf or OAS
COVARIANCE_ESTIMATORS = ("ridge", "ledoit_wolf", "oas")
IMAGE_SCORES = ("patch", "map_peak")
BANK_VIEWS = ("hflip", "vflip", "rot90")
"""``bank_augment``'s views of a training image (``training.augment.VIEWS``)."""


def check_kind(kind: str) -> str:
    """``kind`` if it is a known model kind, else ``ConfigError`` (a ValueError)."""
    if kind not in MODEL_KINDS:
        raise ConfigError(f"unknown model kind {kind!r}; valid kinds: {', '.join(MODEL_KINDS)}")
    return kind


@dataclass(frozen=True)
class BackboneConfig:
    """timm backbone. ``weights``: auto | bundled | random | hub | <path to a state dict>."""

    name: str = "tf_efficientnet_lite0"
    layers: tuple[str, ...] = ("blocks.2", "blocks.4")
    weights: str = "auto"
    weights_file: Path | None = None

    def __post_init__(self) -> None:
        if not self.layers:
            raise ConfigError("backbone.layers: give at least one feature layer")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild and retrain one model (stored with each registry version):
    ``image_size`` (h, w) of the model input; ``val_fraction`` of each test defect type (and
    of the good test images) held out as the validation split that calibrates."""

    kind: str
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    image_size: tuple[int, int] = (256, 256)
    seed: int = 0
    batch_size: int = 8
    num_workers: int = 0
    val_fraction: float = DEFAULT_VAL_FRACTION
    # PatchCore
    coreset_sampling_ratio: float = 0.01
    num_neighbors: int = 9
    memory_bank_max: int | None = 8192  # rows; the coreset ratio shrinks past it (None: no cap)
    rows_budget_gb: float = 0.25  # patch rows held as float32 up to this many GB, then float16
    knn_rank: int | None = None  # served kNN on the bank's top-k principal directions; None: exact
    # a local colour-statistics model fused into the graph: auto keeps it when it helps
    local_statistics: bool | Literal["auto"] = False
    # "patch", anomalib's largest patch distance, or "map_peak", the map's peak after a Gaussian
    # blur of sigma ``image_score_blur`` (a fraction of the map side; auto: chosen on validation)
    image_score: str = "patch"
    image_score_blur: float | Literal["auto"] = 0.0
    bank_augment: tuple[str, ...] = ()  # views of each training image added to the bank
    # the mixed model (training.models.mixed): a supervised head learned from the labelled
    # defects (train/<defect>) fused with PatchCore; auto: fitted where the dataset has them,
    # kept where it misses fewer defects out of fold (mixed.keep); true: always (the dataset
    # must have them)
    supervised: bool | Literal["auto"] = False
    # STFPM
    max_epochs: int = 5
    # PaDiM: a seeded subset of backbone channels per cell (None: all; size grows with its square)
    n_features: int | None = None
    covariance: str = "ridge"
    # components fused with the local score (core.global_context); empty: local score only
    global_context: tuple[str, ...] = ()
    operating_point: OperatingPoint = field(default_factory=OperatingPoint)
    # PatchCore: training images scored by banks fitted on the other folds, for more good
    # calibration scores (training.models.patchcore.out_of_fold); 0: validation good images only
    calibration_folds: int = 5
    image_bits: int = DEFAULT_SOURCE_BITS  # the product's; the bundle's source_bits
    image_range: tuple[float, float] | None = None  # the product's; the bundle's source_range

    def __post_init__(self) -> None:
        check_kind(self.kind)
        check_image_bits(self.image_bits)
        check_image_range(self.image_range)
        _check(self.calibration_folds == 0 or self.calibration_folds >= 2, "calibration_folds",
               "must be 0 (off) or at least 2")  # fmt: skip
        _check(min(self.image_size) >= 32, "image_size", "each side must be at least 32 pixels")
        _check(self.image_size[0] % 32 == 0 and self.image_size[1] % 32 == 0, "image_size",
               f"must be multiples of 32 (backbone stride), got {list(self.image_size)}")  # fmt: skip
        _check(self.batch_size >= 1, "batch_size", "must be at least 1")
        _check(self.num_workers >= 0, "num_workers", "must be 0 or more")
        _check(0.0 <= self.val_fraction < 1.0, "val_fraction", "must be in [0, 1)")
        _check(0.0 < self.coreset_sampling_ratio <= 1.0, "coreset_sampling_ratio",
               "must be in (0, 1]")  # fmt: skip
        _check(self.num_neighbors >= 1, "num_neighbors", "must be at least 1")
        _check(
            self.rows_budget_gb > 0, "rows_budget_gb", f"must be > 0 GB, got {self.rows_budget_gb}"
        )
        _check(self.memory_bank_max is None or self.memory_bank_max >= 1, "memory_bank_max",
               "must be at least 1 row, or null for no cap")  # fmt: skip
        _check(self.knn_rank is None or self.knn_rank >= 1, "knn_rank",
               "must be at least 1 dimension, or null for the exact kNN")  # fmt: skip
        _check(self.max_epochs >= 1, "max_epochs", "must be at least 1")
        _check(self.n_features is None or self.n_features >= 1, "n_features",
               "must be at least 1 channel, or null for every channel")  # fmt: skip
        _check(self.covariance in COVARIANCE_ESTIMATORS, "covariance",
               f"unknown estimator {self.covariance!r}; valid: {', '.join(COVARIANCE_ESTIMATORS)}")  # fmt: skip
        _check(self.local_statistics in (True, False, "auto"), "local_statistics",
               f"must be true, false or auto, got {self.local_statistics!r}")  # fmt: skip
        _check(self.image_score in IMAGE_SCORES, "image_score",
               f"must be one of {', '.join(IMAGE_SCORES)}, got {self.image_score!r}")  # fmt: skip
        blur = self.image_score_blur
        _check(blur == "auto" or (isinstance(blur, int | float) and 0 <= blur < 0.5),
               "image_score_blur", f"must be auto or a fraction of the side in [0, 0.5), got {blur!r}")  # fmt: skip
        _check(blur in (0, 0.0) or self.image_score == "map_peak", "image_score_blur",
               "blurs the map before its peak: needs image_score: map_peak")  # fmt: skip
        _check(self.supervised in (True, False, "auto"), "supervised",
               f"must be true, false or auto, got {self.supervised!r}")  # fmt: skip
        unknown_views = [v for v in self.bank_augment if v not in BANK_VIEWS]
        _check(not unknown_views, "bank_augment",
               f"unknown views {unknown_views}; valid: {list(BANK_VIEWS)}")  # fmt: skip
        _check(len(set(self.bank_augment)) == len(self.bank_augment), "bank_augment",
               f"a view is listed twice: {list(self.bank_augment)}")  # fmt: skip
        _check("rot90" not in self.bank_augment or self.image_size[0] == self.image_size[1],
               "bank_augment", f"rot90 needs a square image_size, got {list(self.image_size)}")  # fmt: skip
        unknown = [c for c in self.global_context if c not in GLOBAL_COMPONENTS]
        _check(not unknown, "global_context",
               f"unknown components {unknown}; valid: {list(GLOBAL_COMPONENTS)}")  # fmt: skip
        for kind, options in MODEL_KINDS.items():
            for name, why in options.items():
                _check(kind == self.kind or getattr(self, name) == _DEFAULTS[name], name,
                       f"{why} (this is {self.kind}); remove it")  # fmt: skip

    @property
    def local_statistics_mode(self) -> str:
        """``local_statistics`` as ``off``, ``on`` or ``auto``."""
        if self.local_statistics == "auto":
            return "auto"
        return "on" if self.local_statistics else "off"


_DEFAULTS = {item.name: item.default for item in fields(ModelConfig)}


@dataclass(frozen=True)
class ProductConfig:
    """``configs/products/<product>.yaml``: where the data lives and per-model overrides."""

    data: Path | None = None
    description: str = ""
    models: dict[str, Any] = field(default_factory=dict)
    reference: Path | None = None
    """A good part in the nominal pose; ROI polygons are in its pixel coordinates."""
    roi: RoiSpec | None = None
    """Where the part is inspected (``core.roi``); None: the whole image."""
    units: PhysicalUnits | None = None
    """Pixel size and minimum defect area (``core.units``); None: sizes in pixels only."""
    alignment: AlignmentSpec | None = None
    """Register every image to ``reference`` first (``runtime.alignment``); None: no alignment."""
    tiling: TilingSpec | None = None
    """Train and inspect on tiles at native resolution (``core.tiling``); None: whole image."""
    auto: bool = False
    """``inspection train`` runs the ``--auto`` search for this product."""
    auto_budget_s: float = 240.0
    """Seconds the auto search may use (``--budget`` overrides)."""
    operating_point: OperatingPoint | None = None
    """For every model kind (``core.operating_point``); None: the model config's."""
    image_bits: int = DEFAULT_SOURCE_BITS
    """Significant bits of the camera's 16-bit images (12: values 0..4095), for training and
    every station (``preprocessing.source_bits``)."""
    image_range: tuple[float, float] | None = None
    """[low, high] in file units: the values signed, 32-bit and float images (height maps,
    depth) read over, low as 0 and high as 255 (``core.images.map_declared_range``), for
    training and every station (``preprocessing.source_range``); None: such images refused."""
    input_domain: DomainTolerance = field(default_factory=DomainTolerance)
    """How far a station accepts images unlike the training ones (``core.input_domain``)."""

    def __post_init__(self) -> None:
        _check(self.auto_budget_s > 0, "auto_budget_s", "must be positive seconds")
        check_image_bits(self.image_bits)
        check_image_range(self.image_range)
        if self.alignment is not None and self.reference is None:
            raise ConfigError("alignment: needs a reference image (the 'reference' key)")
        for kind, section in self.models.items():
            check_kind(kind)
            if not isinstance(section, Mapping):
                raise ConfigError(f"models.{kind}: expected a mapping of ModelConfig keys")


def check_image_bits(bits: object) -> None:
    """``ConfigError`` naming ``image_bits`` unless ``bits`` is an integer from 8 to 16."""
    try:
        check_source_bits(bits, "image_bits")
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def check_image_range(value: object) -> None:
    """``ConfigError`` naming ``image_range`` unless ``value`` is None or [low, high]."""
    try:
        check_value_range(value, "image_range")
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def product_config_path(product: str, directory: Path | None = None) -> Path:
    """``<directory>/products/<product>.yaml`` (``directory`` None: ``default_configs_dir()``)."""
    return (directory or default_configs_dir()) / "products" / f"{product}.yaml"


def load_product_config(product: str, directory: Path | None = None) -> ProductConfig:
    """The product's YAML (``product_config_path``), or an empty ``ProductConfig`` without one."""
    path = product_config_path(product, directory)
    if not path.is_file():
        return ProductConfig()
    return from_mapping(ProductConfig, read_yaml(path), where=str(path))


def model_defaults_path(kind: str, directory: Path | None = None) -> Path | None:
    """``models/<kind>.yaml`` of ``directory`` (the site's configs folder), else the one the
    checkout ships (``core.config.CHECKOUT_CONFIGS``); None when neither exists."""
    for folder in (directory or default_configs_dir(), CHECKOUT_CONFIGS):
        path = folder / "models" / f"{kind}.yaml"
        if path.is_file():
            return path
    return None


def load_model_config(
    kind: str,
    *,
    product: str | None = None,
    config_file: str | Path | None = None,
    overrides: Iterable[str] = (),
    directory: Path | None = None,
) -> ModelConfig:
    """Merge the config layers (module docstring) into a validated ``ModelConfig``, in the
    site's configs ``directory`` (None: ``default_configs_dir()``)."""
    check_kind(kind)
    base_path = model_defaults_path(kind, directory)
    data: dict[str, Any] = read_yaml(base_path) if base_path is not None else {}
    where = str(base_path) if base_path is not None else f"built-in {kind} defaults"
    if product is not None:
        product_config = load_product_config(product, directory)
        if product_config.operating_point is not None:
            point = to_mapping(product_config.operating_point)
            data = deep_merge(data, {"operating_point": point})
        data = deep_merge(data, product_config.models.get(kind, {}))
        data = deep_merge(data, {"image_bits": product_config.image_bits})
        if product_config.image_range is not None:
            data = deep_merge(data, {"image_range": list(product_config.image_range)})
        if product_config_path(product, directory).is_file():
            where += f" + {product_config_path(product, directory)}"
    if config_file is not None:
        data = deep_merge(data, read_yaml(config_file))
        where += f" + {config_file}"
    for item in overrides:
        data = deep_merge(data, parse_override(item))
    if data.get("kind", kind) != kind:
        raise ConfigError(f"{where}: kind {data['kind']!r} does not match the requested {kind!r}")
    data["kind"] = kind
    return model_config_from_mapping(data, where=where)


def model_config_from_mapping(data: Mapping[str, Any], where: str = "config") -> ModelConfig:
    """Build a ``ModelConfig`` (e.g. from a registry record's ``config``)."""
    try:
        return from_mapping(ModelConfig, data, where=where)
    except ConfigError as exc:
        if str(exc).startswith(where):
            raise
        raise ConfigError(f"{where}: {exc}") from exc


def parse_override(item: str) -> dict[str, Any]:
    """``"backbone.weights=random"`` -> ``{"backbone": {"weights": "random"}}`` (YAML values)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. max_epochs=5")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item!r}: value is not valid YAML ({exc})") from exc
    result: dict[str, Any] = {}
    node = result
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return result
