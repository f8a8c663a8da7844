"""The station core's config section (``core:``), embedded by both station configs.

``configs/station.yaml`` (HTTP service and watch folder) and ``configs/line.yaml`` (PLC line
station) each carry one ``core:`` section: which products, where the registry and results
store are, the image limits, and which bundles may load. Secure by default: a station needs
the site's public key pinned (``bundle_public_key``) or an explicit
``allow_unsigned_bundles: true``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from PIL import Image

from inspection.core.config import configs_folder, folder_of
from inspection.core.errors import ConfigError, RegistryError
from inspection.core.images import DEFAULT_MAX_SIDE, STATION_FORMATS
from inspection.core.input_domain import InputCheck, input_check_mode
from inspection.core.registry import check_name
from inspection.core.signing import PUBLIC_KEY_FILE, SigningError, load_public_key
from inspection.runtime.camera import BoundsConfig

log = logging.getLogger(__name__)

SITE_PUBLIC_KEY = Path("var/keys") / PUBLIC_KEY_FILE
"""Where ``inspection keys init`` writes the site's public key (relative to the site folder)."""
UNSIGNED_WARNING = (
    "allow_unsigned_bundles: true: bundle signatures are NOT checked; an altered or unsigned "
    "bundle will be served. Pin bundle_public_key on every production station."
)


@dataclass(frozen=True)
class StationCoreConfig:
    """What every station front door shares: products, registry, store, limits, signatures.

    Paths are relative to the working directory.
    """

    products: tuple[str, ...]
    store_url: str = "sqlite:///var/inspection.db"
    blob_dir: Path = Path("var/blobs")
    registry_dir: Path = Path("var/registry")
    max_pixels: int = 25_000_000
    max_side: int = DEFAULT_MAX_SIDE
    image_formats: tuple[str, ...] = STATION_FORMATS
    registry_poll_seconds: float = 2.0
    bundle_public_key: Path | None = None
    """The site's pinned signing key (``inspection keys init``): only bundles it signed load."""
    allow_unsigned_bundles: bool = False
    """``true``: serve bundles without checking signatures (development only; logged loudly)."""
    tune_on_load: bool = True
    """Measure the live model's gated bundles (FP32/FP16/INT8) on this CPU when no tuning
    record exists, and serve the fastest (see ``inspection.runtime.tuning``)."""
    bounds: BoundsConfig = field(default_factory=BoundsConfig)
    """Working size, latency budget (per product) and stored images (``runtime.camera``)."""
    validation_images: dict[str, Path] = field(default_factory=dict)
    """Per product, a folder of this station's own validation images (MVTec layout: good/,
    optional <defect>/ and ground_truth/). A bundle whose golden outputs drift on this CPU is
    then re-calibrated on them (``runtime.recalibration``) instead of refused."""
    input_check: InputCheck = "refuse"
    """Images unlike the live bundle's training images (``core.input_domain``: grey under a
    colour-trained bundle, far smaller, another aspect ratio): ``refuse`` them (an error, never
    a verdict; the default), ``warn`` (judge them, log and count a warning) or ``"off"``
    (quoted: YAML reads a bare off as false)."""
    configs_dir: Path | None = None
    """The station's own configs (``refine.yaml``, the mask refiners' settings). Default: the
    folder of the station or line config file the section was read from
    (``with_config_folder``), whatever the working directory."""

    def __post_init__(self) -> None:
        try:
            input_check_mode(self.input_check)
        except ValueError as exc:
            raise ConfigError(f"core: {exc}") from exc
        if not self.products:
            raise ConfigError("core: 'products' must list at least one product")
        for product in self.products:
            try:
                check_name("product", product)
            except RegistryError as exc:
                raise ConfigError(f"core: products: {exc}") from exc
        for name in ("max_pixels", "max_side"):
            if getattr(self, name) < 1:
                raise ConfigError(f"core: {name} must be >= 1, got {getattr(self, name)}")
        unknown = sorted(set(self.bounds.products) - set(self.products))
        if unknown:
            raise ConfigError(
                f"core: bounds.products {unknown} are not in products {list(self.products)}"
            )
        stray = sorted(set(self.validation_images) - set(self.products))
        if stray:
            raise ConfigError(
                f"core: validation_images names {stray}, which are not in products "
                f"{list(self.products)}"
            )
        object.__setattr__(
            self, "validation_images", {k: Path(v) for k, v in self.validation_images.items()}
        )
        if self.registry_poll_seconds <= 0:
            raise ConfigError("core: registry_poll_seconds must be > 0 seconds")
        check_formats(self.image_formats)
        if self.bundle_public_key is None and not self.allow_unsigned_bundles:
            raise ConfigError(
                "core: bundle_public_key is not set: pin the site's public key "
                f"(`inspection keys init` writes {SITE_PUBLIC_KEY}), or set "
                "allow_unsigned_bundles: true to serve unsigned bundles (not for production)"
            )
        if self.bundle_public_key is not None and self.allow_unsigned_bundles:
            raise ConfigError(
                "core: set either bundle_public_key or allow_unsigned_bundles: true, not both"
            )

    @property
    def configs(self) -> Path:
        """``configs_dir``; a section built without a file: ``core.config.default_configs_dir()``."""
        return configs_folder(self.configs_dir)


class HasCore(Protocol):
    """A station or line config: a frozen dataclass with the ``core:`` section."""

    core: StationCoreConfig


C = TypeVar("C", bound=HasCore)


def with_config_folder(config: C, config_file: str | Path) -> C:
    """``config`` as read from ``config_file``: unless its ``core.configs_dir`` names a folder,
    the station's configs are those beside the file (``core.config.folder_of``), as a site
    file's are (``SiteConfig.configs_dir``)."""
    if config.core.configs_dir is not None:
        return config
    core = dataclasses.replace(config.core, configs_dir=folder_of(config_file))
    return dataclasses.replace(config, core=core)  # type: ignore[type-var]


def check_registry_dir(config: StationCoreConfig) -> None:
    """Refuse to start on a ``registry_dir`` that is not a folder (a typo would otherwise
    read as "no live bundle" for every product). Checked when a station starts
    (``StationCore.build``, and the station commands before anything else), not on load:
    ``inspection station sync`` fills a registry folder that does not exist yet."""
    if not config.registry_dir.is_dir():
        raise ConfigError(
            f"core: registry_dir {config.registry_dir.resolve()} is not a directory; fix the "
            "path, or fill it with `inspection station sync`"
        )


def check_port(where: str, port: int) -> None:
    """A TCP port must be in 1..65535; ``where`` names the key (``"mqtt: port"``)."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"{where} must be in 1..65535, got {port}")


def check_formats(formats: tuple[str, ...]) -> None:
    """Every name must be a format Pillow can open; an empty list is refused."""
    Image.init()
    known = sorted(Image.OPEN)
    if not formats:
        raise ConfigError("core: image_formats must list at least one format")
    for name in formats:
        if name not in Image.OPEN:
            raise ConfigError(f"core: image_formats: unknown format {name!r}; Pillow reads {known}")


CORE_KEYS = frozenset(StationCoreConfig.__dataclass_fields__)


def check_moved_keys(data: Mapping[str, Any], where: str) -> None:
    """Name the top-level keys of a config written before the ``core:`` section existed."""
    moved = sorted(CORE_KEYS & set(data))
    if moved:
        raise ConfigError(
            f"{where}: {', '.join(map(repr, moved))} now belong(s) under 'core:' (the section "
            "both station configs share); move them there, see configs/station.yaml"
        )


def pin_public_key(config_path: str | Path, public_key: str | Path) -> bool:
    """Pin ``public_key`` as ``core.bundle_public_key`` in a station or line config file.

    Edits the YAML text so its comments stay; an ``allow_unsigned_bundles`` line in the
    section is commented out. Returns False when the file pinned that key already.
    """
    path = Path(config_path)
    original = path.read_text(encoding="utf-8")
    lines = original.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.split("#")[0].strip() == "core:"), None)
    if start is None:
        raise ConfigError(f"{path}: no 'core:' section to pin the key in")
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].strip() and lines[i][0] not in " #"),
        len(lines),
    )
    seen = False
    for i in range(start + 1, end):
        entry, _, comment = lines[i].partition("#")
        key, _, value = entry.strip().partition(":")
        if key == "bundle_public_key":
            seen = True
            if value.strip() != str(public_key):
                note = f"  #{comment.rstrip()}" if comment else ""
                lines[i] = f"  bundle_public_key: {public_key}{note}\n"
        elif key == "allow_unsigned_bundles":
            lines[i] = "  # " + lines[i].lstrip()
    if not seen:
        lines.insert(start + 1, f"  bundle_public_key: {public_key}\n")
    text = "".join(lines)
    if text == original:
        return False
    path.write_text(text, encoding="utf-8")
    return True


def pinned_key(config: StationCoreConfig) -> Ed25519PublicKey | None:
    """The pinned site signing key; ``None`` only with ``allow_unsigned_bundles`` (warned)."""
    if config.bundle_public_key is None:
        log.warning(UNSIGNED_WARNING)
        return None
    try:
        return load_public_key(config.bundle_public_key)
    except SigningError as exc:
        raise ConfigError(f"core: bundle_public_key: {exc}") from exc
