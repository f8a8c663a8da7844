"""Station service configuration (``configs/station.yaml``) as a frozen, typed object."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from inspection.core.config import from_mapping, read_yaml
from inspection.core.errors import ConfigError
from inspection.station.config import (
    StationCoreConfig,
    check_moved_keys,
    check_port,
    with_config_folder,
)
from inspection.station.limits import ReadDeadlines


@dataclass(frozen=True)
class WatchConfig:
    """Watch-folder mode: images dropped into ``<root>/incoming`` are inspected as
    ``default_product``, those in ``incoming/<product>/`` as that product."""

    enabled: bool = False
    root: Path = Path("var/watch")
    station_id: str = "watch"
    default_product: str | None = None
    poll_seconds: float = 0.5
    settle_seconds: float = 1.0


@dataclass(frozen=True)
class StationConfig:
    """What ``inspection serve`` / ``watch`` need: the ``core`` section and the HTTP settings."""

    core: StationCoreConfig
    host: str = "127.0.0.1"
    port: int = 8080
    max_upload_bytes: int = 20_000_000
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
    watch: WatchConfig = field(default_factory=WatchConfig)

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "workers", "max_in_flight", "max_upload_memory_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"station config: {name} must be >= 1, got {getattr(self, name)}")
        check_port("station config: port", self.port)
        if min(self.body_timeout_seconds, self.body_idle_seconds, self.upload_grace_seconds) <= 0:
            raise ConfigError(
                "station config: body_timeout_seconds, body_idle_seconds and "
                "upload_grace_seconds must be > 0"
            )
        if self.min_upload_bytes_per_second < 0:
            raise ConfigError("station config: min_upload_bytes_per_second must be >= 0")
        if self.watch.poll_seconds <= 0:
            raise ConfigError("station config: poll intervals must be > 0 seconds")
        if self.watch.settle_seconds < 0:
            raise ConfigError("station config: watch.settle_seconds must be >= 0")
        default = self.watch.default_product
        if default is not None and default not in self.core.products:
            raise ConfigError(
                f"station config: watch.default_product {default!r} is not in products "
                f"{list(self.core.products)}"
            )


def read_deadlines(config: StationConfig) -> ReadDeadlines:
    """The per-connection body-read deadlines of ``config``."""
    return ReadDeadlines(
        total_s=config.body_timeout_seconds,
        idle_s=config.body_idle_seconds,
        min_rate=config.min_upload_bytes_per_second,
        grace_s=config.upload_grace_seconds,
    )


def load_station_config(path: str | Path) -> StationConfig:
    """Read and validate a station YAML file; its configs folder is the file's."""
    data = read_yaml(path)
    check_moved_keys(data, str(path))
    return with_config_folder(from_mapping(StationConfig, data, where=str(path)), path)
