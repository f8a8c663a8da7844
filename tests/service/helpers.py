"""Helpers for the service tests: real bundles in a registry, a station under TestClient."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from inspection.core.registry import Registry
from inspection.core.signing import pin_file
from inspection.service.app import create_app
from inspection.service.config import StationConfig, WatchConfig
from inspection.service.station import Station
from inspection.service.watch import WatchFolder
from inspection.station.config import CORE_KEYS, StationCoreConfig
from inspection.store.tokens import create_token

PRODUCT = "brick"
V1, V2, V3 = "v0001-fp32", "v0002-fp32", "v0003-fp32"


@dataclass(frozen=True)
class Bundles:
    """Source folders of real bundles: v1 as exported, v2 and v3 the same weights re-versioned."""

    v1: Path
    v2: Path
    v3: Path


@dataclass
class Served:
    """A station app running under TestClient, with a valid token for station ``st-1``."""

    client: TestClient
    station: Station
    registry: Registry
    config: StationConfig
    token: str
    monitor_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def ops(self, path: str) -> Any:
        """GET an ops endpoint (``/healthz`` in full, ``/metrics``) with a monitor token."""
        return self.client.get(path, headers={"Authorization": f"Bearer {self.monitor_token}"})

    def inspect(self, data: bytes, **params: Any) -> Any:
        params.setdefault("product", PRODUCT)
        return self.client.post(
            "/v1/inspect",
            params=params,
            content=data,
            headers=self.headers | {"Content-Type": "image/png"},
        )


@contextmanager
def watching(config: StationConfig) -> Iterator[WatchFolder]:
    """A station process with its watch folder (one 'run' between two restarts)."""
    station = Station.build(config, with_watch=False)
    station.core.start()
    watcher = WatchFolder(config.watch, station.pipeline)
    watcher.acquire()
    try:
        yield watcher
    finally:
        watcher.release()
        station.models.stop()
        station.store.engine.dispose()


def serving_registry(root: Path, bundles: Bundles) -> Registry:
    """A fresh registry with v1 added and promoted."""
    registry = Registry(root)
    registry.bundles.add_bundle(PRODUCT, bundles.v1, V1)
    registry.journal.promote(PRODUCT, V1, actor="tests", reason="initial")
    return registry


def station_config(root: Path, store_url: str | None = None, **overrides: Any) -> StationConfig:
    """A station over ``root``; keys of the ``core`` section may be given flat. Unsigned bundles
    are allowed unless ``bundle_public_key`` is given (the session's bundles are unsigned)."""
    core: dict[str, Any] = {
        "store_url": store_url or f"sqlite:///{root / 'inspection.db'}",
        "blob_dir": root / "blobs",
        "registry_dir": root / "registry",
        "products": (PRODUCT,),
        "max_pixels": 1_000_000,
        "registry_poll_seconds": 3600.0,
        "allow_unsigned_bundles": "bundle_public_key" not in overrides,
    }
    if "bundle_public_key" in overrides:  # the key file given, pinned by its fingerprint
        overrides["signing_keys"] = (pin_file(overrides.pop("bundle_public_key")),)
    core |= {key: value for key, value in overrides.items() if key in CORE_KEYS}
    values: dict[str, Any] = {
        "max_upload_bytes": 300_000,
        "workers": 2,
        "watch": WatchConfig(root=root / "watch", station_id="cam-1", default_product=PRODUCT),
    }
    values |= {key: value for key, value in overrides.items() if key not in CORE_KEYS}
    return StationConfig(core=StationCoreConfig(**core), **values)


@contextmanager
def serve(config: StationConfig) -> Iterator[Served]:
    """Run ``create_app(config)`` (real Inspector) for the duration of the block."""
    app = create_app(config)
    station: Station = app.state.station
    token, _ = create_token(station.store, "st-1", "tests")
    monitor, _ = create_token(station.store, "prometheus", "tests", role="monitor")
    with TestClient(app) as client:
        yield Served(client, station, Registry(config.core.registry_dir), config, token, monitor)
    station.store.engine.dispose()
