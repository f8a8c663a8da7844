"""``inspection serve``, ``inspection watch`` and ``inspection tokens``: the line-station service;
``inspection registry serve``: the central catalog stations pull live bundles from."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from inspection.cli._site import SITE_OPTION, group
from inspection.cli.console import check_port_free, screen
from inspection.cli.station import CONFIG_OPTION, announce_signatures
from inspection.core.config import load_site_config
from inspection.service.config import load_station_config
from inspection.station.config import check_registry_dir

if TYPE_CHECKING:
    from inspection.service.watch import WatchFolder
    from inspection.store.store import Store

console = screen()
# Alembic logs every plugin it sets up at INFO on each start; operators need none of it.
logging.getLogger("alembic").setLevel(logging.WARNING)
commands = typer.Typer()
registry_app = group("registry", "The central model registry over HTTP.")
tokens_app = group(
    "tokens", "API tokens for stations, reviewers, admins and monitors (stored hashed)."
)


@commands.command("serve")
def serve(
    config: Path = CONFIG_OPTION,
    host: str = typer.Option(None, help="Bind address (default: from the config)."),
    port: int = typer.Option(None, min=1, max=65535, help="Port (default: from the config)."),
) -> None:
    """Run the HTTP inspection API (plus the watch folder when the config enables it)."""
    station_config = load_station_config(config)
    host, port = host or station_config.host, port or station_config.port
    check_port_free(host, port)  # before minutes of loading models
    # deferred: uvicorn, alembic, fastapi, openvino, prometheus_client, sqlalchemy, starlette
    import uvicorn

    from inspection.service.app import create_app

    check_registry_dir(station_config.core)
    announce_signatures(station_config.core, console)
    app = create_app(station_config)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)


@commands.command("watch")
def watch(
    config: Path = CONFIG_OPTION,
    once: bool = typer.Option(False, "--once", help="Process what is there now, then exit."),
) -> None:
    """Inspect files dropped into the watch folder, without the HTTP API."""
    # deferred: alembic, openvino, prometheus_client, sqlalchemy
    from inspection.service.station import Station
    from inspection.service.watch import WatchFolder

    station_config = load_station_config(config)
    check_registry_dir(station_config.core)
    announce_signatures(station_config.core, console)
    station = Station.build(station_config, with_watch=False)
    station.core.start()
    watcher = WatchFolder(station_config.watch, station.pipeline)
    watcher.acquire()
    try:
        if once:
            _scan_until_idle(watcher, station_config.watch.settle_seconds)
        else:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: watcher.stop())
            console.print(f"watching {watcher.incoming} (Ctrl-C to stop)")
            watcher.run()
    finally:
        watcher.release()
        station.core.stop()
    console.print(f"watch folder: {watcher.counts}")


def _scan_until_idle(watcher: WatchFolder, settle_seconds: float) -> None:
    watcher.scan_once()  # first look records sizes; stable files are taken on the next look
    time.sleep(settle_seconds)
    while watcher.scan_once():
        time.sleep(settle_seconds)


@registry_app.command("serve")
def serve_registry(
    site: str = SITE_OPTION,
    host: str = typer.Option("127.0.0.1", help="Bind address (0.0.0.0 to serve the plant LAN)."),
    port: int = typer.Option(8700, min=1, max=65535, help="Port."),
) -> None:
    """Serve live bundles per product to stations (bearer tokens from `inspection tokens`)."""
    check_port_free(host, port)
    # deferred: uvicorn, alembic, fastapi, sqlalchemy, starlette
    import uvicorn

    from inspection.distribution.server import create_catalog_app
    from inspection.store.store import Store

    site_config = load_site_config(site)
    store = Store.migrated(site_config.store_url, site_config.blob_dir)  # like serve
    app = create_catalog_app(site_config.registry_dir, store)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)


@tokens_app.command("create")
def create(
    station: str = typer.Option(
        ..., "--station", "-s", help="Station id (or a person's name for other roles)."
    ),
    label: str = typer.Option(None, "--label", help="Free text, e.g. where the token is used."),
    role: str = typer.Option(
        "station",
        "--role",
        help="station (inspect, own results), reviewer (label), admin (thresholds, "
        "promote, rollback), monitor (/healthz in full, /metrics).",
    ),
    config: Path = CONFIG_OPTION,
) -> None:
    """Issue a token. It is printed once and never stored in clear."""
    # deferred: alembic, sqlalchemy
    from inspection.store.tokens import create_token

    token, info = create_token(_store(config, first_use=True), station, label, role=role)
    console.print(f"token id {info.id} for [bold]{info.station_id}[/] (role {info.role}):")
    print(token)
    console.print("[dim]Store it now: it cannot be shown again.[/]")


@tokens_app.command("list")
def list_(
    station: str = typer.Option(None, "--station", "-s", help="Only this station."),
    config: Path = CONFIG_OPTION,
) -> None:
    """List tokens (ids, stations, labels, state); secrets are never shown."""
    # deferred: alembic, sqlalchemy
    from inspection.store.tokens import list_tokens

    table = Table("id", "name", "role", "label", "created", "state")
    for info in list_tokens(_store(config), station):
        state = "active" if info.active else f"revoked {info.revoked_at:%Y-%m-%d %H:%M}"
        created = f"{info.created_at:%Y-%m-%d}"
        table.add_row(str(info.id), info.station_id, info.role, info.label or "", created, state)
    console.print(table)


@tokens_app.command("revoke")
def revoke(
    token_id: int = typer.Argument(..., help="Token id from 'inspection tokens list'."),
    config: Path = CONFIG_OPTION,
) -> None:
    """Revoke a token; requests using it get 401 from then on."""
    # deferred: alembic, sqlalchemy
    from inspection.store.tokens import revoke_token

    info = revoke_token(_store(config), token_id)
    console.print(f"token {info.id} of station {info.station_id} revoked")


def _store(config: Path, *, first_use: bool = False) -> Store:
    """The station's store, never migrated here (``first_use``: the schema of an empty one)."""
    # deferred: alembic, sqlalchemy
    from inspection.store.store import Store

    core = load_station_config(config).core
    store = Store(core.store_url, core.blob_dir)
    if first_use:
        store.ensure_schema()
    else:
        store.check_schema()
    return store
