"""``inspection station``: commands run on a line PC next to ``inspection serve`` (sync, tune,
run, status, forward, trigger)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from inspection.cli._signals import stop_on_signals
from inspection.cli._site import group
from inspection.cli.console import logs_beside, print_table, quiet_logs, screen, verbose_requested
from inspection.core.bundle import read_bundle_metadata
from inspection.core.errors import ConfigError, InspectionError
from inspection.core.registry import Registry
from inspection.core.signing import Keyring, key_id
from inspection.distribution.sync import (
    HttpSource,
    PathSource,
    SourceUnreachable,
    SyncOutcome,
    sync_forever,
    sync_once,
)
from inspection.line.config import LinkSecurity, load_line_config
from inspection.line.links import LINKS
from inspection.runtime.hardware import cpu_info
from inspection.service.config import load_station_config
from inspection.station.config import UNSIGNED_WARNING, check_registry_dir, pinned_key
from inspection.station.limits import ImageLimits

if TYPE_CHECKING:
    from inspection.core.certificate import Certificate
    from inspection.runtime.hardware import CpuInfo
    from inspection.station.config import StationCoreConfig
    from inspection.store.outbox import SinkBacklog
    from inspection.store.store import Store

console = screen()
station_app = group("station", "Line-station maintenance commands.")
TOKEN_ENV = "INSPECTION_REGISTRY_TOKEN"
CONFIG_OPTION = typer.Option(
    Path("configs/station.yaml"), "--config", "-c", help="Station config YAML."
)
TOKEN_FILE_OPTION = typer.Option(
    None, "--token-file", help=f"File holding the station token (default: ${TOKEN_ENV})."
)


def announce_signatures(config: StationCoreConfig, console: Console) -> None:
    """What every station command says about bundle signatures when it starts."""
    if config.allow_unsigned_bundles:
        console.print(f"[bold red]WARNING: {UNSIGNED_WARNING}[/]")
        return
    pins = ", ".join(f"{p.signs} {p.fingerprint[:23]}…" for p in config.signing_keys)
    revoked = f"; revoked: {', '.join(config.revoked)}" if config.revoked else ""
    console.print(f"bundle signatures: required (pinned {pins or 'nothing'}{revoked})")


@station_app.command("sync")
def sync(
    source: str = typer.Option(
        ..., "--from", help="Central catalog URL (http://host:8700) or a shared registry path."
    ),
    config: Path = CONFIG_OPTION,
    token_file: Path = TOKEN_FILE_OPTION,
    watch: bool = typer.Option(False, "--watch", help="Keep polling (pull on promotion)."),
    interval: float = typer.Option(5.0, "--interval", help="Seconds between polls (--watch)."),
) -> None:
    """Pull the live bundle of every product in the station config into its local registry.

    Downloads are digest-checked, and signature-checked against the key the config pins
    (``core.trust_file``, written by ``inspection keys init``), before they become live; on
    any failure the station keeps its last good bundle. Exit code 2 when a one-shot sync
    cannot reach the source (one line naming it) or did not finish for some product;
    ``--watch`` keeps retrying, with a warning once per outage.
    """
    station_config = load_station_config(config)
    announce_signatures(station_config.core, console)
    public_key = pinned_key(station_config.core)
    if source.startswith(("http://", "https://")):
        token = token_file.read_text(encoding="utf-8").strip() if token_file else ""
        bundle_source = HttpSource(source, token or os.environ.get(TOKEN_ENV, ""))
    else:
        bundle_source = PathSource(source)
    registry_dir, products = station_config.core.registry_dir, station_config.core.products
    if not watch:
        try:
            outcomes = sync_once(
                bundle_source, registry_dir, products, public_key=public_key, offline_ok=False
            )
        except SourceUnreachable as exc:
            raise SourceUnreachable(f"{exc}; nothing was synced") from exc
        _print(outcomes)
        if any(outcome.status in ("failed", "offline") for outcome in outcomes):
            raise typer.Exit(2)
        return
    stop = stop_on_signals()
    console.print(f"syncing {', '.join(products)} from {source} every {interval:g} s")
    sync_forever(
        bundle_source,
        registry_dir,
        products,
        interval_s=interval,
        stop=stop,
        on_outcomes=lambda outcomes: _print([o for o in outcomes if o.status != "current"]),
        public_key=public_key,
    )


PRODUCTS_OPTION = typer.Option(
    None, "--product", "-p", help="Product(s) to tune (default: the station config's products)."
)
IMAGES_OPTION = typer.Option(
    None,
    "--images",
    help="Folder of part images to time on (default: a synthetic part of the size the bundle "
    "serves: a tiled bundle's training image size; an aligned bundle's own reference).",
)


@station_app.command("tune")
def tune(
    config: Path = CONFIG_OPTION,
    products: list[str] = PRODUCTS_OPTION,
    images: Path = IMAGES_OPTION,
    samples: int = typer.Option(40, "--samples", min=5, help="Batch-1 timings per bundle."),
) -> None:
    """Time every gated bundle (FP32/FP16/BF16/INT8) of each live model on this CPU, each after
    its golden check passes here; record the fastest.

    ``inspection serve`` serves the recorded choice (shown in /healthz, /metrics and the
    dashboard's Models page); a later promotion makes the record stale until tuned again.
    """
    # deferred: openvino
    from inspection.runtime.paths import expand_paths

    station_config = load_station_config(config)
    check_registry_dir(station_config.core)
    announce_signatures(station_config.core, console)
    public_key = pinned_key(station_config.core)  # siblings that fail it are never loaded
    registry = Registry(station_config.core.registry_dir)
    probe = expand_paths([images])[:16] if images else None
    if images and not probe:
        raise typer.BadParameter(f"no images in {images}", param_hint="--images")
    cpu = cpu_info()
    console.print(f"CPU: {cpu.summary()}; OpenVINO {cpu.openvino}: {', '.join(cpu.capabilities)}")
    # the screen shows the steps and tables; INFO logs (each bundle loaded) go to a log file
    logs = logs_beside(station_config.core.registry_dir)
    with quiet_logs(logs, "tune", verbose=verbose_requested(False)) as log_file:
        for product in products or station_config.core.products:
            _tune_one(registry, product, probe, samples, public_key, cpu)
    if log_file is not None:
        console.print(f"logs: {log_file}", soft_wrap=True, highlight=False)


def _tune_one(
    registry: Registry, product: str, probe: list[Path] | None, samples: int,
    public_key: Keyring | None, cpu: CpuInfo,
) -> None:  # fmt: skip
    # deferred: openvino
    from inspection.runtime.tuning import tune_product, tuning_path

    with console.status(f"{product}: measuring") as status:
        record = tune_product(
            registry,
            product,
            images=probe,
            samples=samples,
            progress=lambda message, s=status: _note(s, message),
            public_key=public_key,
        )
        table = Table(
            "bundle", "precision", "executed", "golden drift", "p50 ms", "p95 ms", "img/s",
            "gate", "served",
        )  # fmt: skip
        for m in record.measurements:
            served = "yes" if m.bundle_id == record.chosen_bundle_id else ""
            drift = "-" if m.golden_drift is None else f"{m.golden_drift:.2g}"
            table.add_row(
                m.bundle_id, m.precision, m.executed_precision or "?", drift, f"{m.p50_ms:.1f}",
                f"{m.p95_ms:.1f}", f"{m.throughput_ips:.0f}", m.gate_note, served,
            )  # fmt: skip
        print_table(console, table)  # uncut in a log or pipe too
        console.print(
            f"{product}: serving [bold]{record.chosen_bundle_id}[/] (load {record.load_1m}); "
            f"recorded in {tuning_path(registry, product, cpu)}"
        )


def _note(status: object, message: str) -> None:
    """Show a tuning step in the spinner and keep it in the output (refusals must be seen)."""
    status.update(message)  # type: ignore[attr-defined]
    console.print(f"  {message}", highlight=False)


LINE_OPTION = typer.Option(
    Path("configs/line.yaml"), "--config", "-c", help="Line-station config YAML."
)


@station_app.command("run")
def run(config: Path = LINE_OPTION) -> None:
    """Run a line station: PLC handshake (OPC UA / MQTT) -> camera -> inspect -> store -> sinks.

    Results wait in the store's outbox until every sink acknowledged them, so a broker or
    PLC outage, or a restart of this process, loses none. Stop with Ctrl-C or SIGTERM.
    """
    # deferred: alembic, asyncua, openvino, paho, prometheus_client, sqlalchemy
    from inspection.line.station import LineStation

    logging.getLogger("asyncua").setLevel(logging.WARNING)  # logs every request at INFO
    line_config = load_line_config(config)  # refine.yaml beside it, whatever the working dir
    check_registry_dir(line_config.core)
    announce_signatures(line_config.core, console)
    _announce_links(line_config.security)
    station = LineStation.build(line_config)
    stop = stop_on_signals()
    station.start()
    ways = [name for name, section in line_config.links.items() if section.enabled]
    console.print(
        f"station {line_config.station_id}: triggers over {', '.join(ways) or 'nothing'}, "
        f"sinks {', '.join(s.name for s in line_config.sinks) or 'none'} (Ctrl-C to stop)"
    )
    try:
        stop.wait()
    finally:
        station.stop()


@station_app.command("status")
def status(config: Path = LINE_OPTION) -> None:
    """Outbox backlog per sink (waiting, oldest, delivered), the pinned signing key, and each
    product's live bundle with its signature check and certificate (n good, the bound at the
    false-reject budget, what is still needed). Takes a line config (``configs/line.yaml``)
    or a serve config (``configs/station.yaml``: no sinks or PLC links)."""
    # deferred: openvino, sqlalchemy
    from inspection.station.trust import bundle_signature_status
    from inspection.store.store import Store

    core, sinks, security, limits = _status_source(config)
    check_registry_dir(core)
    backlog = _backlog(core)
    if backlog is not None:
        _print_central(core)
        table = Table("sink", "waiting", "oldest s", "delivered")
        for sink in sinks:
            entry = backlog.get(sink)
            oldest = (
                f"{entry.oldest_age_s:.1f}" if entry and entry.oldest_age_s is not None else "-"
            )
            table.add_row(
                sink, str(entry.pending if entry else 0), oldest,
                str(entry.delivered if entry else 0),
            )  # fmt: skip
        console.print(table)
    if security is not None:
        _announce_links(security)
    public_key = pinned_key(core)
    if public_key is None:
        console.print("[bold red]bundle signatures: NOT checked (allow_unsigned_bundles: true)[/]")
    else:
        console.print(f"bundle signatures: required, pinned key {key_id(public_key)}")
    registry = Registry(core.registry_dir)
    store = None if backlog is None else Store(core.store_url, core.blob_dir)
    try:
        for product in core.products:
            live = registry.journal.live(product)
            if live is None:
                console.print(f"{product}: live bundle [red]none[/]")
                continue
            check = bundle_signature_status(registry, product, live.bundle_id, public_key)
            colour = "green" if check.startswith(("signed", "not checked")) else "red"
            console.print(f"{product}: live bundle {live.bundle_id} [{colour}]{check}[/]")
            _print_limits(registry, product, live.bundle_id, limits)
            served = _print_certificate(registry, store, product)
            _print_readiness(registry, product, live.bundle_id, served)
    finally:
        if store is not None:
            store.engine.dispose()


def _print_certificate(registry: Registry, store: Store | None, product: str) -> Certificate | None:
    """Print the live bundle's certificate as served (with the line's audited parts); return it."""
    # deferred: sqlalchemy
    from inspection.station.certify import product_certificate

    try:
        certificate = product_certificate(registry, store, product)
    except (InspectionError, OSError) as exc:
        console.print(f"{product}: certificate [red]unreadable[/]: {escape(str(exc))}")
        return None
    shown = certificate.certificate
    held = shown is not None and shown.certified
    colour = "green" if held and shown.certified_for_line else "yellow" if held else "red"
    console.print(f"{product}: certificate [{colour}]{escape(certificate.describe())}[/]")
    return shown


def _print_readiness(
    registry: Registry, product: str, bundle_id: str, served: Certificate | None
) -> None:
    """The live bundle's LINE-READY verdict on the held-out parts its export measured, with
    the ``served`` certificate (the line's audited parts) where there is one."""
    # deferred: openvino
    from inspection.runtime.self_check import recorded_check

    try:
        metadata = read_bundle_metadata(registry.bundles.bundle_dir(product, bundle_id))
        readiness = recorded_check(metadata).readiness(served)
    except (InspectionError, OSError) as exc:
        console.print(f"{product}: verdict [red]unreadable[/]: {escape(str(exc))}")
        return
    colour = "green" if readiness.ready else "red"
    console.print(f"[{colour}]{escape(readiness.line())}[/]", soft_wrap=True, highlight=False)


def _print_limits(registry: Registry, product: str, bundle_id: str, limits: ImageLimits) -> None:
    """A warning per station limit below the live bundle's training images."""
    try:
        domain = read_bundle_metadata(registry.bundles.bundle_dir(product, bundle_id)).input_domain
    except (InspectionError, OSError) as exc:
        console.print(f"{product}: image limits [red]unchecked[/]: {escape(str(exc))}")
        return
    for line in limits.below(domain):
        console.print(f"{product}: [yellow]warning:[/] live bundle {bundle_id}: {escape(line)}")


def _status_source(
    path: Path,
) -> tuple[StationCoreConfig, tuple[str, ...], LinkSecurity | None, ImageLimits]:
    """The core, sink names, link security and image limits of a line config, or the core
    and limits (with ``max_upload_bytes``) of a serve config; a file that is neither raises
    the line config's error."""
    try:
        line_config = load_line_config(path)
    except ConfigError as line_error:
        try:
            serve = load_station_config(path)
        except ConfigError:
            raise line_error from None
        core = serve.core
        return core, (), None, ImageLimits(core.max_pixels, core.max_side, serve.max_upload_bytes)
    core, sinks = line_config.core, tuple(sink.name for sink in line_config.sinks)
    return core, sinks, line_config.security, ImageLimits(core.max_pixels, core.max_side)


def _announce_links(security: LinkSecurity) -> None:
    # deferred: asyncua, paho (the line extras)
    from inspection.line.security import insecure_notice

    notice = insecure_notice(security)
    if notice:
        console.print(f"[bold red]WARNING: {escape(notice)}[/]", soft_wrap=True)
    else:
        console.print(
            f"line links: {security.mode} (certificates and secrets in {security.pki_dir})"
        )


def _backlog(core: StationCoreConfig) -> dict[str, SinkBacklog] | None:
    """The outbox backlog per sink, read without migrating or creating the database."""
    # deferred: sqlalchemy, alembic
    from inspection.store.outbox import Outbox
    from inspection.store.store import Store, StoreError, sqlite_file

    path = sqlite_file(core.store_url)
    if path is not None and not path.exists():
        _say_no_outbox(f"no results database at {path.resolve()} yet (the station creates it)")
        return None
    store = Store(core.store_url, core.blob_dir)
    try:
        store.check_schema()
        return Outbox(store).backlog()
    except StoreError as exc:
        _say_no_outbox(str(exc))
        return None
    finally:
        store.engine.dispose()


@station_app.command("forward")
def forward(
    config: Path = CONFIG_OPTION,
    drain: bool = typer.Option(False, "--drain", help="Forward until nothing waits, then exit."),
    release: bool = typer.Option(
        False, "--release", help="Put the quarantined rows back in line (the central side fixed)."
    ),
) -> None:
    """The results waiting for the central store (rows, bytes, oldest, rate, alarm) and those
    it refused (quarantined, with its error); with ``--release`` those go back in line, with
    ``--drain`` forward now (``inspection serve`` forwards in the background anyway)."""
    # deferred: sqlalchemy, alembic
    from inspection.store import forward as forwarding
    from inspection.store.forward import Forwarder
    from inspection.store.store import Store

    core = load_station_config(config).core
    if core.central is None:
        raise typer.BadParameter(f"{config}: core.central is not set; nothing is forwarded")
    if release:
        store = Store(core.store_url, core.blob_dir)
        store.check_schema()
        console.print(f"released {forwarding.release(store)} quarantined rows")
        store.engine.dispose()
    if drain:
        store = Store(core.store_url, core.blob_dir)
        store.check_schema()
        forwarder = Forwarder.from_config(store, core.central)
        try:
            console.print(f"forwarded {forwarder.drain()} results")
        finally:
            forwarder.stop()
    _print_central(core)


def _print_central(core: StationCoreConfig) -> None:
    # deferred: sqlalchemy, alembic
    from inspection.store.forward import backlog, quarantined
    from inspection.store.store import Store

    if core.central is None:
        return
    store = Store(core.store_url, core.blob_dir)
    try:
        waiting, parked = backlog(store), quarantined(store)
    finally:
        store.engine.dispose()
    oldest = "-" if waiting.oldest_age_s is None else f"{waiting.oldest_age_s:.0f} s"
    alarm = waiting.alarm(core.central.alarm_after_seconds)
    console.print(
        f"{'[bold red]ALARM[/] ' if alarm else ''}central backlog: {waiting.rows} results, "
        f"{waiting.bytes / 1e6:.1f} MB, oldest {oldest}, forwarding "
        f"{waiting.rate_per_s:.1f}/s (alarm after {core.central.alarm_after_seconds:g} s); "
        f"{waiting.quarantined} quarantined",
        highlight=False,
    )
    for sink, key, error in parked[:20]:
        console.print(f"  quarantined {sink} {escape(key)}: {escape(error or '')}", highlight=False)


def _say_no_outbox(reason: str) -> None:
    console.print(f"[yellow]outbox: {escape(reason)}[/]", highlight=False, soft_wrap=True)


FIRING = [kind for kind in LINKS.values() if kind.trigger]  # the links that fire a trigger
VIA_HELP = ", ".join(f"{k.name} ({k.trigger_help})" for k in FIRING[:-1])
VIA_HELP += f" or {FIRING[-1].name} ({FIRING[-1].trigger_help})."


@station_app.command("trigger")
def trigger(
    config: Path = LINE_OPTION,
    via: str = typer.Option("mqtt", "--via", help=VIA_HELP),
    product: str = typer.Option("", "--product", "-p", help="Product (default: the selected)."),
    part_id: str = typer.Option("", "--part-id", help="Part id to record with the result."),
    request_id: str = typer.Option("", "--request-id", help="Idempotency key (default: new)."),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds to wait for the answer."),
) -> None:
    """Fire one trigger at a running station and print its answer (commissioning check)."""
    line_config = load_line_config(config)
    if via not in (names := [kind.name for kind in FIRING]):
        raise typer.BadParameter(f"use {', '.join(names[:-1])} or {names[-1]}", param_hint="--via")
    fire = LINKS[via].load("trigger")  # imports the link's protocol library
    answer = fire(line_config, request_id=request_id, product=product, part_id=part_id,
                  timeout_s=timeout)  # fmt: skip
    console.print_json(answer.to_json())
    if answer.verdict is None:
        raise typer.Exit(1)


def _print(outcomes: list[SyncOutcome]) -> None:
    colours = {"current": "dim", "updated": "green", "not_live": "yellow"}
    for outcome in outcomes:
        colour = colours.get(outcome.status, "red")
        console.print(
            f"[{colour}]{outcome.product}: {outcome.status}[/] live={outcome.live or '-'} "
            f"remote={outcome.remote or '-'} {outcome.detail}"
        )
