"""``inspection demo``: the README main job, from demo data to a checked live bundle.

It runs ``DEMO_STEPS`` in order (a step whose modules are not installed is skipped). STFPM
trains on brick only (``DEMO_PLAN``): a second model family, cheaply; on grass and gravel it
scores below PatchCore (``docs/measurements.md``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from inspection.cli._site import SITE_OPTION
from inspection.cli.console import (
    StepProgress,
    configs_line,
    log_dir,
    print_log_file,
    print_table,
    quiet_logs,
    summary_table,
    verbose_requested,
)
from inspection.cli.keys import ensure_site_keys, pin_in_configs, site_station_configs
from inspection.cli.operating import kind_miss_text, operating_text
from inspection.cli.train import (
    SET_OPTION,
    VERBOSE_OPTION,
    _closing_rows,
    _offline,
    _print_metrics,
    _report_dir,
    console,
)
from inspection.core.config import SiteConfig, load_site_config
from inspection.core.errors import BundleError
from inspection.core.model_record import ModelRecord
from inspection.core.product_config import load_model_config, load_product_config
from inspection.core.readiness import Readiness
from inspection.core.registry import Registry
from inspection.core.signing import PRIVATE_KEY_FILE, load_private_key, site_keys_dir
from inspection.data.dataset import Dataset, load_dataset
from inspection.data.decoded import KEPT
from inspection.data.demo import write_demo
from inspection.refine.config import RefineConfig, refine_config_in
from inspection.runtime.hardware import cpu_info

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from inspection.core.export_gate import GateRecord
    from inspection.runtime.self_check import LiveCheck

log = logging.getLogger(__name__)
commands = typer.Typer()

DEMO_PLAN: dict[str, tuple[str, ...]] = {
    "brick": ("patchcore", "stfpm"),
    "grass": ("patchcore",),
    "gravel": ("patchcore",),
}
"""The models the demo trains per product (``--models`` trains the same ones on every product)."""
DEFAULT_MODELS = ("patchcore",)
"""A product outside ``DEMO_PLAN`` (``--products``) trains these."""


@dataclass
class DemoContext:
    """State shared by the demo steps."""

    site: SiteConfig
    products: list[str]
    models: dict[str, tuple[str, ...]]  # per product, the kinds it trains (``plan_models``)
    overrides: list[str] = field(default_factory=list)  # --set, applied to every model
    results: list[ModelRecord] = field(default_factory=list)  # the trained versions
    checks: list[LiveCheck] = field(default_factory=list)  # one per product
    notes: list[str] = field(default_factory=list)
    verdicts: list[Readiness] = field(default_factory=list)  # shown last, not fatal
    failures: list[str] = field(default_factory=list)  # make the demo exit non-zero
    verbose: bool = False  # raw library output (Lightning progress bars, INFO logs)
    refine: RefineConfig | None = None  # the site's refine.yaml, read at start (export step)

    @property
    def registry(self) -> Registry:
        return Registry(self.site.registry_dir)


def plan_models(products: list[str], models: str | None) -> dict[str, tuple[str, ...]]:
    """Per product, the kinds to train: ``models`` on every product when given, else the plan."""
    chosen = tuple(m.strip() for m in (models or "").split(",") if m.strip())
    return {p: chosen or DEMO_PLAN.get(p, DEFAULT_MODELS) for p in products}


def step_data(ctx: DemoContext) -> None:
    missing = [p for p in ctx.products if not (ctx.site.datasets_dir / p / "train").is_dir()]
    if not missing:
        console.print(f"demo data present in {ctx.site.datasets_dir}")
        return
    with console.status(f"writing demo data for {', '.join(missing)}"):
        write_demo(ctx.site.datasets_dir, missing)
    console.print(f"wrote demo data: {', '.join(missing)} in {ctx.site.datasets_dir}")


def step_train(ctx: DemoContext) -> None:
    total = sum(len(ctx.models[p]) for p in ctx.products)
    console.print(configs_line(ctx.site), soft_wrap=True, highlight=False)
    with StepProgress(console, "train", total) as progress:
        for product in ctx.products:
            dataset = load_dataset(ctx.site.datasets_dir / product)
            with KEPT.held():  # a product's images decoded once for all its models
                _train_product(ctx, product, dataset, progress)


def _train_product(
    ctx: DemoContext, product: str, dataset: Dataset, progress: StepProgress
) -> None:
    """Train ``ctx.models[product]`` on ``dataset`` and write each version's report."""
    # deferred: torch, anomalib, lightning, timm, spared by the demo's other steps and --help
    from inspection.training.evaluate import write_report
    from inspection.training.train import train_model

    configs = ctx.site.configs
    for kind in ctx.models[product]:
        progress.task(f"{product}: {kind} ({len(dataset.train_samples)} images)")
        config = load_model_config(
            kind, product=product, overrides=ctx.overrides, directory=configs
        )
        outcome = train_model(
            config, dataset, product=product, registry=ctx.registry, progress=ctx.verbose,
            roi=load_product_config(product, configs).roi, stages=progress.stage,
        )  # fmt: skip
        write_report(_report_dir(ctx.site, outcome.record), outcome.predictions, outcome.metrics)
        ctx.results.append(outcome.record)
        progress.done()


def demo_precisions(product: str, products: list[str]) -> tuple[str, ...]:
    """FP32 and INT8; the first product also bf16 where this CPU executes it."""
    if product != products[0] or cpu_info().unavailable("bf16"):
        return ("fp32", "int8")
    return ("fp32", "bf16", "int8")


def step_export(ctx: DemoContext) -> None:
    """Export each product's best model to its ``demo_precisions``, then serve the gated one
    fastest on this CPU."""
    try:
        # deferred: torch, anomalib, openvino, nncf; absent without the training extra
        from inspection.training.export import ExportOptions
        from inspection.training.registry_export import RegistryExport, export_gated
    except ImportError as exc:
        log.info("export step skipped: %s", exc)
        return
    # deferred: openvino, spared by --help and the other commands
    from inspection.runtime.self_check import recorded_check
    from inspection.runtime.tuning import promote_fastest

    signing_key = _site_signing_key(ctx)
    for product in ctx.products:
        records = [r for r in ctx.results if r.product == product]
        if not records:
            continue
        best = max(records, key=lambda r: r.evaluation().image_auroc or 0.0)
        with console.status(f"{product}: exporting {best.version}") as status:
            gated = export_gated(
                ctx.registry, product, demo_precisions(product, ctx.products),
                RegistryExport(version=best.version, configs_dir=ctx.site.configs),
                ExportOptions(refine=ctx.refine or RefineConfig()), progress=status.update,
            )  # fmt: skip
        # A refused INT8 bundle leaves the FP32 one live: noted, not fatal.
        for precision, why in gated.refused.items():
            ctx.notes.append(f"{product} {precision} gate: REFUSED, not registered: {why}")
        for result in gated.results:
            auroc = result.metadata.evaluation().image_auroc
            shown = "n/a" if auroc is None else f"{auroc:.3f}"
            verdict = gate_text(result.gate) if result.metadata.precision != "fp32" else "reference"
            ctx.notes.append(
                f"{product} {result.metadata.precision} gate: {verdict}; bundle "
                f"{result.bundle_id} image AUROC {shown}"
            )
        if not gated.results:
            continue
        readiness = recorded_check(gated.results[0].metadata).readiness()
        verdict = readiness.word
        ctx.registry.journal.promote(
            product, gated.results[0].bundle_id, actor="demo", reason=f"inspection demo ({verdict})"
        )
        with console.status(f"{product}: timing the gated bundles on this CPU") as status:
            key = signing_key.public_key()
            record = promote_fastest(
                ctx.registry, product, actor="demo", progress=status.update, public_key=key
            )
        timings = ", ".join(f"{m.precision} {m.p50_ms:.1f} ms" for m in record.measurements)
        trial = "" if readiness.ready else f", {verdict}: live as the demo's trial"
        ctx.notes.append(
            f"{product}: live bundle {record.chosen_bundle_id}{trial} (fastest gated here, p50: "
            f"{timings}; {cpu_info().summary()})"
        )


def gate_text(gate: GateRecord) -> str:
    """'passed (false reject 0/42 vs FP32 0/42, miss 7/144 vs FP32 7/144)': counts, as the
    verdict gives them."""
    own, fp32 = gate.figures, gate.reference_fp32
    figures = (
        f"false reject {own.rejected_good()}/{own.n_good} vs FP32 "
        f"{fp32.rejected_good()}/{fp32.n_good}, miss {own.missed()}/{own.n_defective} vs FP32 "
        f"{fp32.missed()}/{fp32.n_defective}"
    )
    return f"passed ({figures})" if gate.passed else f"refused ({gate.refusal()}; {figures})"


def _site_signing_key(ctx: DemoContext) -> Ed25519PrivateKey:
    """The site's signing key (and the dashboard's decision key), created on the first run and
    pinned in the station and line configs beside the site config."""
    folder = site_keys_dir(ctx.site.registry_dir)
    pins, notes = ensure_site_keys(folder)
    ctx.notes.extend(notes)
    ctx.notes.extend(pin_in_configs(pins, site_station_configs(ctx.site), replace=False))
    return load_private_key(folder / PRIVATE_KEY_FILE)


def step_inspect(ctx: DemoContext) -> None:
    """Judge each product's held-out parts with its live bundle on the torch-free runtime:
    they must be judged as its export gate measured, or the demo fails at the end."""
    try:
        # deferred: openvino; absent without the runtime extra
        from inspection.runtime.self_check import LabelledPath, check_live_bundle
    except ImportError as exc:
        log.info("inspect step skipped: %s", exc)
        return
    # deferred: torch, anomalib, openvino, spared by --help and the other commands
    from inspection.training.registry_export import held_out_test_samples

    for product in ctx.products:
        live = ctx.registry.journal.live(product)
        if live is None:
            continue
        bundle_dir = ctx.registry.journal.live_bundle_dir(product)
        record = ctx.registry.bundles.bundle_record(product, live.bundle_id)
        dataset = load_dataset(ctx.site.datasets_dir / product)
        held_out = held_out_test_samples(record, dataset)
        parts = [LabelledPath(s.path, s.label, s.defect_type) for s in held_out]
        with console.status(f"{product}: judging {len(parts)} held-out parts with the live bundle"):
            try:
                check = check_live_bundle(bundle_dir, parts)
            except BundleError as exc:
                ctx.failures.append(f"{product}: live bundle unusable: {exc}")
                continue
        ctx.notes.append(f"station check {check.summary()}")
        ctx.checks.append(check)
        ctx.verdicts.append(check.readiness())
        if not check.passed:
            ctx.failures.append(f"{product}: live bundle misjudges its parts: {check.summary()}")


DemoStep = Callable[[DemoContext], None]
DEMO_STEPS: list[tuple[str, DemoStep]] = [
    ("data", step_data),
    ("train", step_train),
    ("export", step_export),
    ("inspect", step_inspect),
]


@commands.command("demo")
def demo_command(
    products: str = typer.Option(",".join(DEMO_PLAN), "--products", help="Comma-separated."),
    models: str = typer.Option(
        None, "--models", help="Comma-separated, on every product (default: DEMO_PLAN)."
    ),
    skip: str = typer.Option("", "--skip", help="Steps to skip, e.g. export,inspect."),
    overrides: list[str] = SET_OPTION,
    site: str = SITE_OPTION,
    verbose: bool = VERBOSE_OPTION,
) -> None:
    """Main job: demo data -> train PatchCore (+ STFPM on brick) -> evaluate -> export FP32 +
    INT8 (+ bf16 on the first product where this CPU runs it) -> inspect."""
    _offline()
    site_config = load_site_config(site)
    products_list = [p.strip() for p in products.split(",") if p.strip()]
    ctx = DemoContext(
        site_config,
        products_list,
        plan_models(products_list, models),
        list(overrides),
        verbose=verbose_requested(verbose),
        refine=refine_config_in(site_config.configs),  # a bad key stops the demo before work
    )
    with quiet_logs(log_dir(ctx.site), "demo", verbose=ctx.verbose) as log_file:
        _run_demo(ctx, skip, log_file)


def _run_demo(ctx: DemoContext, skip: str, log_file: Path | None) -> None:
    skipped = {s.strip() for s in skip.split(",") if s.strip()}
    started = time.perf_counter()
    for name, step in DEMO_STEPS:
        if name in skipped:
            console.print(f"[dim]step {name}: skipped (--skip)[/]")
            continue
        step_start = time.perf_counter()
        step(ctx)
        console.print(f"[green]step {name} done[/] in {time.perf_counter() - step_start:.0f} s")
    if ctx.results:
        _print_metrics([(r, r.evaluation()) for r in ctx.results])
    for note in ctx.notes:
        console.print(f"- {note}")
    if ctx.checks:
        print_table(console, station_check_table(ctx.checks))
    title = f"demo finished in {time.perf_counter() - started:.0f} s"
    exported = "inspection dashboard   (review results, models, thresholds)"
    rows = _closing_rows(ctx.site, log_file, ctx.results, next_step=exported)
    print_table(console, summary_table(title, rows))
    print_log_file(console, log_file)
    for verdict in ctx.verdicts:
        colour = "green" if verdict.ready else "yellow"
        console.print(f"[bold {colour}]{escape(verdict.line())}[/]", soft_wrap=True)
    if ctx.failures:
        for failure in ctx.failures:
            console.print(f"[bold red]FAILED[/] {failure}")
        raise typer.Exit(1)


def station_check_table(checks: list[LiveCheck]) -> Table:
    """Live bundles on held-out parts through the station runtime."""
    table = Table("live bundle", "operating point", "good rejected", "miss per defect kind")
    for check in checks:
        f, op = check.figures, check.operating
        table.add_row(
            check.bundle,
            operating_text(op),
            f"{f.rejected_good()}/{f.n_good}",
            kind_miss_text(check.miss) if check.miss else "unknown (no defective parts)",
        )
    return table
