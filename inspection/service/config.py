"""Station service configuration (``configs/station.yaml``) as a frozen, typed object."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from inspection.core.config import from_mapping, read_yaml
from inspection.core.errors import ConfigError
from inspection.station.config import StationCoreConfig, check_moved_keys


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
    """Everything ``inspection serve`` / ``inspection watch`` need: the station core section
    (``core``) and the HTTP front door's own settings. Paths are relative to cwd."""

    core: StationCoreConfig
    host: str = "127.0.0.1"
    port: int = 8080
    max_upload_bytes: int = 20_000_000
    workers: int = 2
    max_in_flight: int = 8
    """Inspect requests admitted at once (reading, queued or inferring); more get 503."""
    body_timeout_seconds: float = 30.0
    """An upload must arrive completely within this time, or it gets 408."""
    watch: WatchConfig = field(default_factory=WatchConfig)

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "workers", "max_in_flight"):
            if getattr(self, name) < 1:
                raise ConfigError(f"station config: {name} must be >= 1, got {getattr(self, name)}")
        if self.port < 1:
            raise ConfigError(f"station config: port must be >= 1, got {self.port}")
        if self.body_timeout_seconds <= 0:
            raise ConfigError("station config: body_timeout_seconds must be > 0")
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


def load_station_config(path: str | Path) -> StationConfig:
    """Read and validate a station YAML file; unknown keys raise ``ConfigError`` by name."""
    data = read_yaml(path)
    check_moved_keys(data, str(path))
    return from_mapping(StationConfig, data, where=str(path))
