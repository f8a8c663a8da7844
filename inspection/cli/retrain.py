"""``inspection retrain``, ``inspection rollback`` and ``inspection scheduler``."""

from __future__ import annotations

import logging
import signal
import threading

import typer
from rich.console import Console

console = Console()
log = logging.getLogger(__name__)
SITE_OPTION = typer.Option(None, "--site", help="Site config YAML (default: configs/site.yaml).")
CONFIG_OPTION = typer.Option(
    None, "--config", help="Retrain config YAML (default: configs/retrain.yaml)."
)

SET_OPTION = typer.Option(
    [], "--set", help="Change the challenger's config, e.g. --set coreset_sampling_ratio=0.05."
)


def _configs(site: str | None, config: str | None):  # -> (SiteConfig, RetrainConfig)
    from inspection.core.config import load_site_config
    from inspection.retrain.config import load_retrain_config

    site_config = load_site_config(site)
    return site_config, load_retrain_config(config, site_config.retrain or None)


def retrain(
    product: str = typer.Option(..., "--product", "-p", help="Product to retrain."),
    site: str = SITE_OPTION,
    config: str = CONFIG_OPTION,
    actor: str = typer.Option("cli", "--actor", help="Who starts this run (audit log)."),
    overrides: list[str] = SET_OPTION,
) -> None:
    """Train a challenger on original + reviewed-good images; promote it only if it passes the gate.

    Exit codes: 0 promoted or champion kept (also: skipped because another run holds the
    lock), 2 the run failed (the champion stays live).
    """
    from inspection.core.errors import InspectionError
    from inspection.retrain.lock import RetrainBusy
    from inspection.retrain.pipeline import retrain_product

    site_config, retrain_config = _configs(site, config)
    try:
        with console.status(f"retraining {product}") as status:
            result = retrain_product(
                product,
                site=site_config,
                config=retrain_config,
                actor=actor,
                overrides=overrides,
                progress=lambda message: status.update(f"{product}: {message}"),
            )
    except RetrainBusy as exc:
        log.warning("%s", exc)
        console.print(f"[yellow]skipped:[/] {exc}")
        return
    except InspectionError:
        raise  # one clear line and exit code 2 (inspection.cli.main)
    except Exception as exc:
        log.exception("retrain of %s failed", product)
        console.print(f"[bold red]retrain failed, the champion stays live:[/] {exc}")
        raise typer.Exit(2) from exc
    colour = "green" if result.status == "promoted" else "yellow"
    console.print(f"[{colour}]{result.summary()}[/]")
    for reason in result.decision.reasons:
        console.print(f"  - {reason}")


def rollback(
    product: str = typer.Option(..., "--product", "-p", help="Product to roll back."),
    actor: str = typer.Option(..., "--actor", help="Who rolls back (audit log)."),
    reason: str = typer.Option(..., "--reason", help="Why (audit log)."),
    site: str = SITE_OPTION,
) -> None:
    """Make the previously live bundle live again (recorded with who and why)."""
    from inspection.core.config import load_site_config
    from inspection.core.errors import RegistryError
    from inspection.core.registry import Registry

    if not actor.strip() or not reason.strip():
        raise RegistryError("a rollback needs who (--actor) and why (--reason)")
    registry = Registry(load_site_config(site).registry_dir)
    before = registry.live(product)
    state = registry.rollback(product, actor=actor.strip(), reason=reason.strip())
    console.print(
        f"[green]{product}: live bundle {before.bundle_id if before else '?'} -> "
        f"{state.bundle_id}[/] (by {state.actor}: {state.reason})"
    )


def scheduler(
    site: str = SITE_OPTION,
    config: str = CONFIG_OPTION,
    once: bool = typer.Option(False, "--once", help="Run the jobs that are due now, then exit."),
    actor: str = typer.Option("scheduler", "--actor", help="Actor recorded for scheduled runs."),
) -> None:
    """Retrain products on their cron schedules (configs/retrain.yaml), one at a time."""
    from inspection.retrain.pipeline import retrain_product
    from inspection.retrain.scheduler import Scheduler

    site_config, retrain_config = _configs(site, config)

    def job(product: str):
        return retrain_product(product, site=site_config, config=retrain_config, actor=actor)

    runner = Scheduler(retrain_config, job)
    if once:
        outcomes = runner.run_due()
        if not outcomes:
            console.print("no retrain job is due")
        for outcome in outcomes:
            console.print(f"{outcome.product}: {outcome.status} — {outcome.detail}")
        if any(outcome.status == "failed" for outcome in outcomes):
            raise typer.Exit(2)
        return
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    runner.run_forever(stop)
    console.print("scheduler stopped")


def register(app: typer.Typer) -> None:
    app.command("retrain")(retrain)
    app.command("rollback")(rollback)
    app.command("scheduler")(scheduler)
