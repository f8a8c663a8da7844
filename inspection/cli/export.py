"""``inspection export``: turn a trained version into a registered OpenVINO bundle."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from inspection.cli._site import SITE_OPTION
from inspection.cli.console import (
    configs_line,
    log_dir,
    print_log_file,
    print_table,
    quiet_logs,
    screen,
    verbose_requested,
)
from inspection.cli.operating import fmt, rate_of, subset_miss_text
from inspection.cli.users import ADMIN_PASSWORD_ENV, authenticated_admin
from inspection.core.bundle import PRECISIONS
from inspection.core.config import load_site_config
from inspection.core.errors import BundleError
from inspection.core.export_gate import BundleFigures, GateRefusal, GateTolerances
from inspection.core.registry import Registry
from inspection.core.retrain_report import RetrainEvent
from inspection.core.signing import require_site_key, site_signing_key
from inspection.refine.config import refine_config_in

commands = typer.Typer()
console = screen()
err_console = screen(stderr=True)
EXIT_GATE_REFUSED = 3
"""Exit code of an export the gate refused (a measured outcome; 2 is a usage or setup error)."""
EXIT_NOT_READY = 4
"""Exit code of ``--promote`` of a bundle that is NOT LINE-READY (registered, not live)."""
TOLERANCE_NAMES = tuple(f.name for f in fields(GateTolerances))


def parse_tolerances(items: list[str]) -> GateTolerances:
    """``["aupro=0.1", ...]`` -> ``GateTolerances``; a bad item is a ``typer.BadParameter``."""
    values: dict[str, float] = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in TOLERANCE_NAMES:
            raise typer.BadParameter(
                f"{item!r}: unknown figure {name!r}; valid: {', '.join(TOLERANCE_NAMES)}",
                param_hint="--tolerance",
            )
        try:
            values[name] = float(value)
        except ValueError as exc:
            raise typer.BadParameter(
                f"{item!r}: {value!r} is not a number", param_hint="--tolerance"
            ) from exc
    try:
        return GateTolerances(**values)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--tolerance") from exc


TOLERANCE_OPTION = typer.Option(
    [],
    "--tolerance",
    help=f"Gate tolerance vs FP32 as NAME=VALUE (repeatable), e.g. aupro=0.05; names: "
    f"{', '.join(TOLERANCE_NAMES)}.",
)


@commands.command("export")
def export_command(
    product: str = typer.Option(..., "--product", "-p", help="Product name."),
    version: str = typer.Option(
        None, "--version", help="Model version, e.g. v0003 (default: latest)."
    ),
    precision: str = typer.Option(
        "fp32", "--precision", help="fp32, fp16, bf16 (CPUs with AVX512_BF16 or AMX) or int8."
    ),
    tolerance: list[str] = TOLERANCE_OPTION,
    force: bool = typer.Option(
        False,
        "--force",
        help=f"Register even if the gate refuses the bundle (else exit code {EXIT_GATE_REFUSED}); "
        "needs --actor (an admin, logged in) and --reason, recorded as a signed force decision "
        "that stations require before they serve a gate-refused bundle.",
    ),
    actor: str = typer.Option(
        "",
        "--actor",
        help="Who exports. With --force: an admin of the site's dashboard users, whose password "
        f"is asked on the terminal or read from {ADMIN_PASSWORD_ENV} (CI).",
    ),
    reason: str = typer.Option("", "--reason", help="Why (required with --force)."),
    promote: bool = typer.Option(
        False, "--promote", help="Make the new bundle live if it is LINE-READY."
    ),
    promote_not_ready: bool = typer.Option(
        False,
        "--promote-not-ready",
        help=f"Make it live even when NOT LINE-READY (else exit code {EXIT_NOT_READY}); the "
        "promotion records --actor (default: your login) and what it lacks.",
    ),
    allow_unsigned: bool = typer.Option(
        False,
        "--allow-unsigned",
        help="Let --promote go live unsigned when the site has no signing key (development).",
    ),
    calibration_size: int = typer.Option(
        64, "--calibration-size", min=1, help="INT8 calibration images."
    ),
    dataset: Annotated[
        Path | None, typer.Option("--dataset", help="Dataset folder (default: the training one).")
    ] = None,
    site: str = SITE_OPTION,
    verbose: bool = typer.Option(False, "--verbose", help="Also print the operating point."),
) -> None:
    """Export, calibrate on its own validation outputs, gate against FP32, and register.

    The bundle is signed with the site key when this machine holds it (``inspection keys
    init``); ``--promote`` refuses to make an unsigned bundle live unless ``--allow-unsigned``.

    Exit codes: 0 registered, 2 a usage or setup error, 3 the gate refused the bundle (not
    registered; --force, by an admin logged in, registers it anyway), 4 --promote of a bundle
    that is NOT LINE-READY (registered, not live; --promote-not-ready makes it live).
    """
    if precision not in PRECISIONS:
        raise typer.BadParameter(
            f"must be one of {', '.join(PRECISIONS)}", param_hint="--precision"
        )
    tolerances = parse_tolerances(tolerance)
    promote = promote or promote_not_ready
    if force and (not actor.strip() or not reason.strip()):
        raise typer.BadParameter(
            "registering a bundle the gate refuses needs who (--actor, an admin) and why "
            "(--reason): both are signed into the force record stations check",
            param_hint="--force",
        )
    site_config = load_site_config(site)
    if force:
        actor = authenticated_admin(site_config, actor.strip(), "--actor")
    refine = refine_config_in(site_config.configs)  # a bad key stops here, before any work
    registry = Registry(site_config.registry_dir)
    if version is None:
        _refuse_kept_out(registry, product)
    signed = site_signing_key(registry.root) is not None
    if promote:
        try:
            require_site_key(registry.root, allow_unsigned=allow_unsigned)
        except BundleError as exc:
            raise typer.BadParameter(str(exc), param_hint="--promote") from exc
    # deferred: torch and OpenVINO (the training side), after the arguments are checked
    from inspection.runtime.self_check import recorded_check
    from inspection.training.export import ExportOptions
    from inspection.training.registry_export import (
        RegistryExport,
        export_bundle,
        record_force,
        roi_decided,
    )

    console.print(configs_line(site_config), soft_wrap=True, highlight=False)
    with (
        quiet_logs(log_dir(site_config), "export", verbose=verbose_requested(False)) as log_file,
        console.status("exporting") as status,
        _gate_refusal_exits(log_file),
    ):
        result = export_bundle(
            registry,
            product,
            ExportOptions(
                precision=precision,  # type: ignore[arg-type]
                calibration_size=calibration_size,
                tolerances=tolerances,
                force=force,
                refine=refine,
            ),
            RegistryExport(
                version=version,
                dataset_path=dataset,
                actor=actor.strip() or getpass.getuser(),
                configs_dir=site_config.configs,
            ),
            progress=lambda message: status.update(message),
        )
    gate = result.gate
    if force and record_force(registry, result, actor=actor, reason=reason, promote=False):
        console.print(
            f"[bold red]FORCED[/]: {result.bundle_id} was refused by the export gate; recorded "
            f"{actor}'s force decision ({reason})",
            highlight=False,
        )
    if not roi_decided(registry, result):
        console.print(
            "[bold red]ROI not decided[/]: no ROI decision carries this bundle's ROI (from "
            "configs/products); stations pinning the site key refuse it until an admin saves "
            "it on the dashboard's ROI page (a signed ROI decision)"
        )
    table = Table("bundle", *GATE_COLUMNS.values())
    table.add_row(f"{product}/{result.bundle_id}", *_figures(gate.figures))
    if result.metadata.precision != "fp32":
        table.add_row("FP32 reference", *_figures(gate.reference_fp32))
    print_table(console, table)  # uncut in a log or pipe too
    calibration = result.metadata.output_calibration
    if verbose and calibration is not None and calibration.operating is not None:
        console.print(
            f"operating point: {calibration.operating.describe()} (raw scores; 0.5 on the "
            "normalised scale that inspect, stations and the dashboard show)"
        )
    if gate.figures.n_defective == 0:
        console.print(
            "miss rates unknown: the product has no defect images (good-only), so the gate "
            "compared the good parts it rejects only"
        )
    else:
        evaluation = result.metadata.evaluation()
        miss = subset_miss_text(evaluation).replace("\n", "; ")
        console.print(f"miss per defect kind at the operating point: {miss}")
    verdict = "passed" if gate.passed else f"FAILED (forced): {gate.refusal()}"
    console.print(f"gate (same figures as its FP32 model): {verdict}")
    readiness = recorded_check(result.metadata).readiness()
    live = promote and (readiness.ready or promote_not_ready)
    if live:
        why = f"exported, forced: {reason}" if force else f"exported {result.metadata.precision}"
        if not readiness.ready:
            why = f"{why}; promoted NOT LINE-READY ({'; '.join(readiness.lacks)})"
        registry.journal.promote(product, result.bundle_id, actor=_actor(actor), reason=why)
    console.print(f"bundle: {result.bundle_dir}" + ("  (live)" if live else ""))
    print_log_file(console, log_file)
    bundle_id = result.bundle_id
    next_step = (
        "live now, inspection serve"
        if live
        else f"inspection promote {product} {bundle_id}, then inspection serve"
    )
    console.print(f"[bold]{escape(readiness.line(next_step))}[/]", soft_wrap=True, highlight=False)
    if not signed:
        console.print(
            f"[bold red]UNSIGNED[/]: stations that pin a key refuse {product}/{bundle_id}. "
            "Next: inspection keys init, then export again",
            highlight=False,
        )
    if live and not readiness.ready:
        console.print(
            f"[bold red]LIVE, NOT LINE-READY[/]: {product}/{bundle_id} promoted by "
            f"{_actor(actor)} with --promote-not-ready (recorded in the registry's history)",
            highlight=False,
        )
    elif promote and not live:
        console.print(
            f"[bold red]NOT PROMOTED[/]: {product}/{bundle_id} is registered but not live: it is "
            "NOT LINE-READY. To serve it anyway, for a trial: inspection promote "
            f"{product} {bundle_id} --promote-not-ready --actor <you>",
            highlight=False,
        )
        raise typer.Exit(EXIT_NOT_READY)


def _actor(actor: str) -> str:
    """Who promotes: ``--actor``, else the login name."""
    return actor.strip() or getpass.getuser()


def _refuse_kept_out(registry: Registry, product: str) -> None:
    """Stop when the latest version (export's default) is a challenger a retrain kept out."""
    versions = registry.bundles.versions(product)
    if not versions:
        return  # export says there is nothing to export
    latest = versions[-1].version
    kept_out = [
        RetrainEvent.from_event(e, f"{product} retrain event") for e in registry.journal.events(product)
        if e.get("action") == "retrain" and e.get("challenger_version") == latest
    ]  # fmt: skip
    if not any(run.decision == "keep" for run in kept_out):
        return
    live = registry.journal.live(product)
    champion = f"; the live bundle is {live.bundle_id}" if live is not None else ""
    raise typer.BadParameter(
        f"the latest version of {product}, {latest}, is the challenger retrain run "
        f"{kept_out[-1].run} kept out ({kept_out[-1].reason}){champion}: pass --version with "
        "the version to export (--version " + latest + " to export the challenger anyway)",
        param_hint="--version",
    )


@contextmanager
def _gate_refusal_exits(log_file: Path | None) -> Iterator[None]:
    """A ``GateRefusal`` ends the command with one line and ``EXIT_GATE_REFUSED``."""
    try:
        yield
    except GateRefusal as exc:
        line = f"[bold red]export gate:[/] {escape(str(exc))}"
        err_console.print(line, highlight=False, soft_wrap=True)
        print_log_file(err_console, log_file)
        raise typer.Exit(EXIT_GATE_REFUSED) from exc


GATE_RATES = {"false_reject_rate": ("false reject", "n_good"), "miss_rate": ("miss", "n_defective")}
"""Rates printed in percent of their count, as ``train`` and the verdict print them:
{figure: (column, the count it is a rate of)}."""
GATE_COLUMNS = {
    **{name: column for name, (column, _) in GATE_RATES.items()},
    "image_auroc": "img AUROC",
    "pixel_auroc": "px AUROC",
    "aupro": "AUPRO",
    "region_recall": "region recall",
    "pixel_f1": "px F1",
}


def _figures(figures: BundleFigures) -> list[str]:
    """The gated figures: the ``GATE_RATES`` as '4.9% of 144' (none measured: "-", not 0),
    the others as fractions."""
    cells = []
    for name in GATE_COLUMNS:
        value = getattr(figures, name)
        if name in GATE_RATES:
            n = getattr(figures, GATE_RATES[name][1])
            cells.append(rate_of(value if n else None, n))
        else:
            cells.append(fmt(value, 4))
    return cells
