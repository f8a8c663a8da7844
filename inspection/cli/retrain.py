"""``inspection retrain``, ``inspection rollback`` and ``inspection scheduler``."""

from __future__ import annotations

import getpass
import logging
import time
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from inspection.cli._signals import Terminated, stop_on_signals, terminate_as_interrupt
from inspection.cli._site import SITE_OPTION, site_registry
from inspection.cli.console import (
    log_dir,
    os_error_line,
    print_log_file,
    quiet_logs,
    screen,
    verbose_requested,
)
from inspection.core.config import DEFAULT_SITE_CONFIG, SiteConfig, load_site_config
from inspection.core.errors import InspectionError, RegistryError
from inspection.core.registry import Registry
from inspection.retrain.config import load_retrain_config, retrain_config_from_mapping
from inspection.retrain.fleet import FleetOptions, retrain_one, run_fleet
from inspection.retrain.lock import RetrainBusy
from inspection.retrain.scheduler import Housekeeping, Scheduler

if TYPE_CHECKING:
    from inspection.retrain.config import RetrainConfig
    from inspection.retrain.pipeline import RetrainResult
    from inspection.store.retention import PruneReport

console = screen()
commands = typer.Typer()
log = logging.getLogger(__name__)
CONFIG_OPTION = typer.Option(
    None,
    "--config",
    help="Retrain config YAML (default: retrain.yaml in the site's configs folder).",
)
SET_OPTION = typer.Option(
    [], "--set", help="Change the challenger's config, e.g. --set coreset_sampling_ratio=0.05."
)


def _configs(site: str | None, config: str | None) -> tuple[SiteConfig, RetrainConfig]:
    """The site config and the retrain config with the site's ``retrain:`` section merged in."""
    site_config = load_site_config(site)
    if site_config.retrain:
        where = f"{site or DEFAULT_SITE_CONFIG}.retrain"
        retrain_config_from_mapping(site_config.retrain, where=where)
    retrain_config = load_retrain_config(
        config, site_config.retrain or None, configs_dir=site_config.configs
    )
    return site_config, retrain_config


@commands.command("retrain")
def retrain(
    product: str = typer.Option(None, "--product", "-p", help="Product to retrain."),
    all_products: bool = typer.Option(
        False, "--all", help="Every product of the site config (or of the registry)."
    ),
    ray_address: str = typer.Option(
        None, "--ray", help="Ray cluster (host:port or 'auto'): one task per product (--all)."
    ),
    cpus_per_task: float = typer.Option(1.0, "--cpus-per-task", help="CPU budget per product."),
    memory_gb: float = typer.Option(
        None,
        "--memory-gb",
        help="Memory budget per product's task (--ray; retrain.yaml's "
        "memory_gb per product overrides it): past it that product fails alone.",
    ),
    site: str = SITE_OPTION,
    config: str = CONFIG_OPTION,
    actor: str = typer.Option("cli", "--actor", help="Who starts this run (audit log)."),
    overrides: list[str] = SET_OPTION,
) -> None:
    """Train a challenger on original + reviewed-good images; promote it only if it passes the gate.

    Exit codes: 0 promoted or champion kept (also: skipped because another run holds the
    lock), 2 the run (with --all: any product's run) failed (its champion stays live).
    """
    if all_products == bool(product):
        raise typer.BadParameter("give either --product NAME or --all")
    if ray_address and not all_products:
        raise typer.BadParameter("--ray fans out several products: use it with --all")
    if memory_gb is not None and not ray_address:
        raise typer.BadParameter("--memory-gb budgets each product's Ray task: use it with --ray")
    site_config, retrain_config = _configs(site, config)
    advice = None
    # the screen shows progress and the decision; INFO logs and library warnings go to a file
    with quiet_logs(log_dir(site_config), "retrain", verbose=verbose_requested(False)) as logs:
        try:
            if all_products:
                options = FleetOptions(
                    ray_address, cpus_per_task, actor, tuple(overrides), memory_gb
                )
                _retrain_all(site_config, retrain_config, options)
            else:
                advice = _retrain_one(product, site_config, retrain_config, actor, overrides)
        finally:
            print_log_file(console, logs)
    if advice:
        console.print(f"[bold]{escape(advice)}[/]", soft_wrap=True, highlight=False)


def _retrain_one(
    product: str, site_config: SiteConfig, retrain_config: RetrainConfig, actor: str,
    overrides: list[str],
) -> str | None:  # fmt: skip
    """Run one product's retrain and print its outcome; the plain last line (None: skipped)."""
    # deferred: SQLAlchemy and Alembic, not needed for --help
    from inspection.retrain.pipeline import retrain_product

    try:
        with terminate_as_interrupt(), console.status(f"retraining {product}") as status:
            result = retrain_product(
                product, site=site_config, config=retrain_config, actor=actor, overrides=overrides,
                progress=lambda message: status.update(f"{product}: {message}"),
            )  # fmt: skip
    except RetrainBusy as exc:
        log.warning("%s", exc)
        console.print(f"[yellow]skipped:[/] {exc}")
        return None
    except InspectionError:
        raise  # one clear line and exit code 2 (inspection.cli.main)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM as Terminated
        console.print(
            f"[bold red]retrain {str(exc) or 'interrupted'}; the champion stays live[/] "
            "(recorded as a failed run in the registry's events)"
        )
        raise typer.Exit(143 if isinstance(exc, Terminated) else 130) from exc
    except OSError as exc:  # a folder that is read-only, full or gone: no traceback
        log.debug("retrain of %s failed", product, exc_info=True)
        console.print(
            f"[bold red]retrain failed, the champion stays live:[/] {os_error_line(exc)} "
            "(free space or make it writable, then run again)"
        )
        raise typer.Exit(2) from exc
    except Exception as exc:
        log.exception("retrain of %s failed", product)
        console.print(f"[bold red]retrain failed, the champion stays live:[/] {exc}")
        raise typer.Exit(2) from exc
    colour = "green" if result.status == "promoted" else "yellow"
    console.print(f"[{colour}]{result.summary()}[/]")
    for reason in result.decision.reasons if result.challenger_bundle else ():  # else: summary
        console.print(f"  - {reason}")
    return retrain_advice(result)


def retrain_advice(result: RetrainResult) -> str:
    """The last line of a retrain: what runs now, why, and what to do next."""
    product, champion = result.product, result.champion_bundle or "no bundle"
    data = result.details.get("data") or {}
    left_out = len(data.get("left_out") or {})
    note = f" {left_out} image(s) left out, see the report." if left_out else ""
    if result.details.get("nothing_new"):
        return (
            f"NOTHING NEW: {product} keeps {champion}, no version registered. Next: review "
            "parts on the dashboard, then retrain"
        )
    if result.status == "promoted":
        return (
            f"PROMOTED {product}/{result.challenger_bundle}: passed the gate against "
            f"{champion}, live now.{note} Next: inspection station status gives its LINE-READY "
            "verdict; watch its first parts on the dashboard"
        )
    why = "refused by its export gate" if not result.challenger_bundle else "worse at the gate"
    return (
        f"KEPT {product}/{champion}: the challenger was {why}.{note} Next: review more parts, "
        "then retrain"
    )


def _retrain_all(
    site_config: SiteConfig, retrain_config: RetrainConfig, options: FleetOptions
) -> None:
    products = list(site_config.products) or Registry(site_config.registry_dir).bundles.products()
    if not products:
        console.print("no products: list them under 'products' in the site config")
        raise typer.Exit(2)
    where = options.ray_address and f"Ray at {options.ray_address}"
    budget = f", {options.memory_gb:g} GB" if options.memory_gb else ""
    console.print(
        f"retraining {', '.join(products)} on {where or 'this process, one after another'} "
        f"({options.cpus_per_task:g} CPU{budget} each)"
    )
    colours = {"promoted": "green", "kept": "yellow", "skipped": "yellow", "failed": "bold red"}
    started = time.perf_counter()
    outcomes = run_fleet(
        products,
        site_config,
        retrain_config,
        options,
        on_outcome=lambda o: console.print(o.summary(), style=colours[o.status], markup=False),
    )
    console.print(f"{len(outcomes)} products in {time.perf_counter() - started:.0f} s")
    if any(outcome.status == "failed" for outcome in outcomes):
        raise typer.Exit(2)


@commands.command("rollback")
def rollback(
    product: str = typer.Option(..., "--product", "-p", help="Product to roll back."),
    actor: str = typer.Option(..., "--actor", help="Who rolls back (audit log)."),
    reason: str = typer.Option(..., "--reason", help="Why (audit log)."),
    site: str = SITE_OPTION,
) -> None:
    """Make the previously live bundle live again (recorded with who and why)."""
    if not actor.strip() or not reason.strip():
        raise RegistryError("a rollback needs who (--actor) and why (--reason)")
    registry = site_registry(site)
    before = registry.journal.live(product)
    state = registry.journal.rollback(product, actor=actor.strip(), reason=reason.strip())
    console.print(
        f"[green]{product}: live bundle {before.bundle_id if before else '?'} -> "
        f"{state.bundle_id}[/] (by {state.actor}: {state.reason})"
    )


@commands.command("promote")
def promote(
    product: str = typer.Argument(..., help="Product, e.g. brick."),
    bundle: str = typer.Argument(..., help="Bundle already exported, e.g. v0004-int8."),
    actor: str = typer.Option(None, "--actor", help="Who promotes (default: your login)."),
    reason: str = typer.Option(
        "promoted with inspection promote", "--reason", help="Why (audit log)."
    ),
    promote_not_ready: bool = typer.Option(
        False,
        "--promote-not-ready",
        help="Make it live even when it is NOT LINE-READY (recorded with --actor and what it "
        "lacks).",
    ),
    site: str = SITE_OPTION,
) -> None:
    """Make an exported bundle live, if its export gate passed and it is LINE-READY (or with
    --promote-not-ready), recorded with who and why."""
    # deferred: the station side's trust rules (only this command reads them), OpenVINO
    from inspection.core.bundle import read_bundle_metadata
    from inspection.runtime.self_check import promotion_reason, recorded_check
    from inspection.station.trust import gate_refusal

    actor = actor or getpass.getuser()
    registry = site_registry(site)
    metadata = read_bundle_metadata(registry.bundles.bundle_dir(product, bundle))
    refusal = gate_refusal(metadata)
    if refusal is not None:
        raise RegistryError(
            f"{product}/{bundle} was refused by its export gate ({refusal}): stations refuse "
            "it. Export another version, or have an admin force it (inspection export --force)"
        )
    readiness = recorded_check(metadata).readiness()
    console.print(escape(readiness.line("inspection serve")), soft_wrap=True, highlight=False)
    reason = promotion_reason(
        metadata, reason.strip(), not_ready=promote_not_ready,
        override="add --promote-not-ready (recorded with --actor)",
    )  # fmt: skip
    before = registry.journal.live(product)
    state = registry.journal.promote(product, bundle, actor=actor.strip(), reason=reason)
    console.print(
        f"[green]{product}: live bundle {before.bundle_id if before else 'none'} -> "
        f"{state.bundle_id}[/] (by {state.actor}: {state.reason})"
    )


@commands.command("scheduler")
def scheduler(
    site: str = SITE_OPTION,
    config: str = CONFIG_OPTION,
    once: bool = typer.Option(False, "--once", help="Run the jobs that are due now, then exit."),
    actor: str = typer.Option("scheduler", "--actor", help="Actor recorded for scheduled runs."),
    ray_address: str = typer.Option(
        None, "--ray", help="Run each due job as a Ray task on this cluster (host:port)."
    ),
    cpus_per_task: float = typer.Option(1.0, "--cpus-per-task", help="CPU budget per job (--ray)."),
) -> None:
    """Retrain products on their cron schedules (retrain.yaml), one at a time."""
    # deferred: SQLAlchemy and Alembic, not needed for --help
    from inspection.retrain.pipeline import retrain_product

    site_config, retrain_config = _configs(site, config)
    options = FleetOptions(ray_address, cpus_per_task, actor)

    def job(product: str):
        if ray_address:
            return retrain_one(product, site_config, retrain_config, options)
        return retrain_product(product, site=site_config, config=retrain_config, actor=actor)

    runner = Scheduler(retrain_config, job, housekeeping=(_store_prune(site_config),))
    if once:
        with terminate_as_interrupt():
            outcomes = runner.run_due()
        if not outcomes:
            console.print("no retrain job is due")
        for outcome in outcomes:
            console.print(f"{outcome.product}: {outcome.status} — {outcome.detail}")
        if any(outcome.status == "failed" for outcome in outcomes):
            raise typer.Exit(2)
        return
    stop = stop_on_signals()
    runner.run_forever(stop)
    console.print("scheduler stopped")


def _store_prune(site_config: SiteConfig) -> Housekeeping:
    """The site store's retention prune as a scheduler job (``retention.yaml``'s schedule)."""
    # deferred: SQLAlchemy and Alembic, not needed for --help
    from inspection.store.retention import load_retention, prune_configured
    from inspection.store.store import Store

    def job() -> PruneReport:
        store = Store(site_config.store_url, site_config.blob_dir)
        store.check_schema()
        args = (site_config.configs, site_config.registry_dir, site_config.products)
        return prune_configured(store, *args)[0]

    schedule = load_retention(site_config.configs).prune_schedule  # a bad file stops the start
    return Housekeeping("store prune", schedule, job)
