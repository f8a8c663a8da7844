"""Station service configuration (``configs/station.yaml``) as a frozen, typed object."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from inspection.core.config import from_mapping, read_yaml
from inspection.core.errors import ConfigError, RegistryError
from inspection.core.images import DEFAULT_MAX_SIDE, STATION_FORMATS
from inspection.core.registry import check_name
from inspection.core.signing import SigningError, load_public_key
from inspection.runtime.camera import CameraConfig
from inspection.service.limits import ReadDeadlines

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatchConfig:
    """Watch-folder mode: the camera software drops images into ``<root>/incoming``.

    Files directly in ``incoming/`` are inspected as ``default_product``; files in
    ``incoming/<product>/`` as that product. Results go to the store with ``station_id``.
    """

    enabled: bool = False
    root: Path = Path("var/watch")
    station_id: str = "watch"
    default_product: str | None = None
    poll_seconds: float = 0.5
    settle_seconds: float = 1.0


@dataclass(frozen=True)
class StationConfig:
    """Everything ``inspection serve`` / ``inspection watch`` need. Paths are relative to cwd."""

    store_url: str = "sqlite:///var/inspection.db"
    blob_dir: Path = Path("var/blobs")
    registry_dir: Path = Path("var/registry")
    products: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8080
    max_upload_bytes: int = 20_000_000
    max_pixels: int = 25_000_000
    max_side: int = DEFAULT_MAX_SIDE
    image_formats: tuple[str, ...] = STATION_FORMATS
    workers: int = 2
    max_in_flight: int = 8
    """Inspect requests admitted to inference at once (their upload arrived; queued or
    inferring); more get 503. Uploads still arriving never count here."""
    body_timeout_seconds: float = 30.0
    """An upload must arrive completely within this time, or it gets 408."""
    body_idle_seconds: float = 5.0
    """An upload that sends no byte for this long is closed (408)."""
    min_upload_bytes_per_second: float = 100_000.0
    """After ``upload_grace_seconds``, an upload slower than this on average is closed (408);
    0 disables the check."""
    upload_grace_seconds: float = 2.0
    max_upload_memory_bytes: int = 256_000_000
    """Bytes all uploads still arriving may hold together; beyond it an upload gets 503."""
    camera: CameraConfig = field(default_factory=CameraConfig)
    """Working size, latency budget (per product) and stored images (``runtime.camera``)."""
    registry_poll_seconds: float = 2.0
    bundle_public_key: Path | None = None
    """The site's pinned signing key (``inspection keys init``); set: unsigned bundles are refused."""
    tune_on_load: bool = True
    """Measure the live model's gated bundles (FP32/FP16/INT8) on this CPU when no tuning
    record exists, and serve the fastest (see ``inspection.runtime.tuning``)."""
    watch: WatchConfig = field(default_factory=WatchConfig)

    def __post_init__(self) -> None:
        if not self.products:
            raise ConfigError("station config: 'products' must list at least one product")
        for product in self.products:
            try:
                check_name("product", product)
            except RegistryError as exc:
                raise ConfigError(f"station config: products: {exc}") from exc
        for name in (
            "max_upload_bytes",
            "max_pixels",
            "max_side",
            "workers",
            "max_in_flight",
            "max_upload_memory_bytes",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"station config: {name} must be >= 1, got {getattr(self, name)}")
        if self.port < 1:
            raise ConfigError(f"station config: port must be >= 1, got {self.port}")
        if min(self.body_timeout_seconds, self.body_idle_seconds, self.upload_grace_seconds) <= 0:
            raise ConfigError(
                "station config: body_timeout_seconds, body_idle_seconds and "
                "upload_grace_seconds must be > 0"
            )
        if self.min_upload_bytes_per_second < 0:
            raise ConfigError("station config: min_upload_bytes_per_second must be >= 0")
        unknown = sorted(set(self.camera.products) - set(self.products))
        if unknown:
            raise ConfigError(
                f"station config: camera.products {unknown} are not in products "
                f"{list(self.products)}"
            )
        _check_formats(self.image_formats)
        if self.registry_poll_seconds <= 0 or self.watch.poll_seconds <= 0:
            raise ConfigError("station config: poll intervals must be > 0 seconds")
        if self.watch.settle_seconds < 0:
            raise ConfigError("station config: watch.settle_seconds must be >= 0")
        default = self.watch.default_product
        if default is not None and default not in self.products:
            raise ConfigError(
                f"station config: watch.default_product {default!r} is not in products "
                f"{list(self.products)}"
            )


def _check_formats(formats: tuple[str, ...]) -> None:
    from PIL import Image

    Image.init()
    known = sorted(Image.OPEN)
    if not formats:
        raise ConfigError("station config: image_formats must list at least one format")
    for name in formats:
        if name not in Image.OPEN:
            raise ConfigError(
                f"station config: image_formats: unknown format {name!r}; Pillow reads {known}"
            )


def load_station_config(path: str | Path) -> StationConfig:
    """Read and validate a station YAML file; unknown keys raise ``ConfigError`` by name."""
    return from_mapping(StationConfig, read_yaml(path), where=str(path))


def read_deadlines(config: StationConfig) -> ReadDeadlines:
    """The per-connection body-read deadlines of ``config``."""
    return ReadDeadlines(
        total_s=config.body_timeout_seconds,
        idle_s=config.body_idle_seconds,
        min_rate=config.min_upload_bytes_per_second,
        grace_s=config.upload_grace_seconds,
    )


def pinned_key(config: StationConfig) -> Ed25519PublicKey | None:
    """The station's pinned site signing key; ``None`` (with a warning) when none is set."""
    if config.bundle_public_key is None:
        log.warning("no bundle_public_key pinned: bundle signatures are not checked")
        return None
    try:
        return load_public_key(config.bundle_public_key)
    except SigningError as exc:
        raise ConfigError(f"station config: bundle_public_key: {exc}") from exc
