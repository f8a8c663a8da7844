"""``inspection db``: the results database's schema, upgraded explicitly (opening a store never
migrates it); ``inspection store``: what it keeps (a separate group: it deletes). The database
is the station's (``--config``) or, with ``--site``, the central site's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from inspection.cli._site import announce_env_site, group, site_from_env, site_option
from inspection.cli.console import screen
from inspection.core.config import load_site_config
from inspection.service.config import load_station_config

if TYPE_CHECKING:
    from inspection.store.store import Store

console = screen()
db_app = group("db", "Results database schema (Alembic migrations).")
store_app = group("store", "What the results store keeps (retention.yaml).")
STATION_OPTION = typer.Option(
    None, "--config", "-c", help="Station config YAML whose store to use."
)
SITE_OPTION = site_option("Site config YAML whose store to use", announce=False)
REPORT_OPTION = typer.Option(None, "--report", help="Also write the run's figures as JSON.")
WRITES_OPTION = typer.Option(
    None,
    "--writes",
    help="Another station id whose rows it forwards (its watch folder's): a new id or one an "
    "earlier --writes made; any other PostgreSQL role is refused.",
)


@db_app.command("upgrade")
def upgrade(ctx: typer.Context, config: Path = STATION_OPTION, site: Path = SITE_OPTION) -> None:
    """Bring the schema to the newest revision (safe to repeat; replicas serialise)."""
    store = _target(ctx, config, site).store
    before = store.schema_revision()
    store.migrate()
    after = store.schema_revision()
    if before == after:
        console.print(f"schema already at {after}: nothing to do")
    else:
        console.print(f"schema upgraded: {before or 'empty'} -> {after}")


@db_app.command("status")
def status(ctx: typer.Context, config: Path = STATION_OPTION, site: Path = SITE_OPTION) -> None:
    """Print the schema revision; exit 1 when an upgrade is needed."""
    # deferred: SQLAlchemy and Alembic, not needed for --help
    from inspection.store.store import schema_head

    store = _target(ctx, config, site).store
    current, head = store.schema_revision(), schema_head()
    console.print(f"database revision: {current or 'empty'}; this version needs: {head}")
    if current != head:
        console.print("run 'inspection db upgrade'")
        raise typer.Exit(1)


@db_app.command("station-role")
def station_role(
    ctx: typer.Context,
    station: str = typer.Argument(..., help="The station's id: its PostgreSQL login role."),
    writes: list[str] = WRITES_OPTION,
    config: Path = STATION_OPTION,
    site: Path = SITE_OPTION,
) -> None:
    """Create (or re-key) the central store's login role of a forwarding station; row-level
    security lets it read and write only its own stations' rows. Run as the tables' owner
    (which needs CREATEROLE); prints the new password once (the server gets only its SCRAM
    verifier)."""
    # deferred: SQLAlchemy and Alembic, not needed for --help
    from inspection.store.central_roles import grant_station

    store = _target(ctx, config, site).store
    store.check_schema()
    password = grant_station(store, station, tuple(writes or ()))
    url = store.engine.url.set(username=station, password="PASSWORD", query={})  # CA: ca_file
    console.print(
        f"role {station} may write rows of {', '.join([station, *(writes or ())])}; its password:"
    )
    print(password)
    console.print(
        f"[dim]Put it in the station's core.central.url, e.g. "
        f"{url.render_as_string(hide_password=False)}; it cannot be shown again.[/]",
        soft_wrap=True,
    )


@store_app.command("prune")
def prune(
    ctx: typer.Context,
    config: Path = STATION_OPTION,
    site: Path = SITE_OPTION,
    report: Path = REPORT_OPTION,
    trust_clock: bool = typer.Option(
        False, "--trust-clock", help="Accept the clock after a refused prune (checked by hand)."
    ),
) -> None:
    """Delete what retention.yaml no longer keeps, in short batches (safe while serving).

    Rows lose their blobs first and are deleted later; inspections a retraining run used are
    never touched; blob files no row references are removed; rows age by the trusted time (a
    clock that jumped ahead is refused). Writes the storage gauges; exits 1 when refused."""
    # deferred: SQLAlchemy and Alembic, not needed for --help
    from inspection.store import retention as kept

    target = _target(ctx, config, site)
    target.store.check_schema()
    done, metrics = kept.prune_configured(
        target.store, target.configs, target.registry_dir, target.products, trust_clock=trust_clock
    )
    if report is not None:
        report.write_text(json.dumps(done.to_dict(), indent=2) + "\n", encoding="utf-8")
    console.print(f"{done.summary()}; gauges: {metrics}")
    if done.alarm:
        console.print("[red]storage alarm: past the alarm fraction of the disk budget[/red]")
    if done.clock_refused:
        raise typer.Exit(1)


@dataclass(frozen=True)
class _Target:
    """A store with the configs folder, registry and products of its station or site."""

    store: Store
    configs: Path
    registry_dir: Path
    products: tuple[str, ...]


def _target(ctx: typer.Context, config: Path | None, site: Path | None) -> _Target:
    """The store of the station ``config`` or of the ``site`` (a site from
    ``INSPECTION_SITE_CONFIG`` gives way to ``--config``)."""
    # deferred: SQLAlchemy and Alembic, not needed for --help
    from inspection.store.store import Store

    from_env = site_from_env(ctx)
    if config is not None and site is not None:
        if not from_env:
            raise typer.BadParameter("give --config (a station) or --site, not both")
        site = None  # --config names the store; INSPECTION_SITE_CONFIG only sets a default
    if config is not None:
        core = load_station_config(config).core
        store = Store(core.store_url, core.blob_dir)
        return _Target(store, core.configs, core.registry_dir, tuple(core.products))

    if site is not None and from_env:
        announce_env_site(site)
    site_config = load_site_config(site)
    store = Store(site_config.store_url, site_config.blob_dir)
    return _Target(store, site_config.configs, site_config.registry_dir, site_config.products)
