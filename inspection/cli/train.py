"""``inspection train``, ``inspection evaluate`` and ``inspection demo`` (the README main job).

``inspection demo`` runs the steps in ``DEMO_STEPS`` in order; each is a function of a
``DemoContext``. Steps whose modules are not installed are skipped with a log line.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from inspection.cli._site import site_option
from inspection.cli.console import (
    StepProgress,
    configs_line,
    file_progress,
    log_dir,
    print_table,
    quiet_logs,
    summary_table,
    verbose_requested,
)
from inspection.cli.operating import kind_miss_text, operating_text, subset_miss_text
from inspection.core.config import SiteConfig, load_site_config
from inspection.core.errors import BundleError, DatasetError, RegistryError

if TYPE_CHECKING:
    from inspection.core.metrics import EvaluationMetrics
    from inspection.core.registry import ModelRecord
    from inspection.data.dataset import Dataset
    from inspection.refine.config import RefineConfig

console = Console()
log = logging.getLogger(__name__)

SITE_OPTION = site_option()
DATA_OPTION = typer.Option(None, "--data", help="Dataset folder or spec (default: product's).")
CONFIG_OPTION = typer.Option(None, "--config", help="YAML of model config overrides.")
SET_OPTION = typer.Option(
    [], "--set", help="Override a config key, e.g. --set max_epochs=5 (repeatable)."
)
EVAL_DATA_OPTION = typer.Option(
    None, "--data", help="Dataset (default: the one it was trained on)."
)
UPDATE_OPTION = typer.Option(
    None, "--update", help="Add good images to this product's PatchCore bank (no full refit)."
)
IMAGES_OPTION = typer.Option(None, "--images", help="With --update: folder of good images.")
REVIEWED_OPTION = typer.Option(
    False, "--reviewed", help="With --update: images reviewed good since the parent version."
)
VERBOSE_OPTION = typer.Option(
    False, "--verbose", help="Show library logs, warnings and progress bars (else: a log file)."
)
PARENT_OPTION = typer.Option(None, "--parent", help="With --update: version (default: latest).")
DEMO_PRODUCTS = ("brick", "grass", "gravel")
DEMO_MODELS = ("patchcore", "stfpm")


def _offline() -> None:
    """Nothing in training may download at run time."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _dataset_path(site: SiteConfig, product: str, data: Path | None) -> Path:
    from inspection.core.product_config import load_product_config

    if data is not None:
        return data
    configured = load_product_config(product, site.configs).data
    return configured if configured is not None else site.datasets_dir / product


LEAK_CODE = "train_test_duplicate"
"""The ``data check`` finding that refuses training: a test image identical to a training image
inflates every held-out figure and the threshold calibrated on them."""


def checked_dataset(
    path: Path,
    *,
    allow_duplicates: bool = False,
    image_bits: int | None = None,
    product_file: Path | None = None,
) -> Dataset:
    """The dataset at ``path`` after ``inspection data check``'s checks: unreadable files and
    train/test duplicates refuse it (``DatasetError`` listing them); other findings are printed
    as a summary and training goes on. ``image_bits``: the product's declared bit depth;
    ``product_file``: its config file, which the bit-depth findings tell to edit."""
    from inspection.data.check import check_dataset, listed
    from inspection.data.dataset import load_dataset

    dataset = load_dataset(path)
    dataset.check_readable()  # header probe: all unreadable files in one error, at once
    with file_progress() as progress:
        task = progress.add_task(f"checking {dataset.name}", total=len(dataset.samples))
        report = check_dataset(
            dataset,
            on_file=lambda _path: progress.advance(task),
            image_bits=image_bits,
            product_file=product_file,
        )
    leaks = [p for p in report.errors if p.code == LEAK_CODE]
    if leaks and not allow_duplicates:
        copies = listed([f"{p.path}: {p.message}" for p in leaks], sep="; ")
        raise DatasetError(
            f"{len(leaks)} test image(s) copy training images ({copies}). They would "
            "inflate every held-out figure and bias the threshold: remove them from test/, or "
            "pass --allow-duplicates"
        )
    _print_findings(path, [p for p in report.problems if p.code != LEAK_CODE or allow_duplicates])
    return dataset


def _print_findings(path: Path, problems: list[Any]) -> None:
    if not problems:
        return
    errors = sum(p.severity == "error" for p in problems)
    console.print(
        f"[yellow]data check: {errors} error(s), {len(problems) - errors} warning(s); "
        f"training goes on. `inspection data check {path}` lists them all:[/]"
    )
    for problem in problems[:3]:
        console.print(f"  {problem.severity}: {problem.path}: {problem.message}", highlight=False)


def _report_dir(site: SiteConfig, record: Any) -> Path:
    return site.reports_dir / record.product / f"{record.version}-{record.model_kind}"


# --------------------------------------------------------------------------- train


def train_command(
    product: str = typer.Option(None, "--product", "-p", help="Product name, e.g. brick."),
    model: str = typer.Option(
        "patchcore", "--model", "-m", help="patchcore, stfpm or padim (aligned parts)."
    ),
    data: Path = DATA_OPTION,
    config: Path = CONFIG_OPTION,
    overrides: list[str] = SET_OPTION,
    site: str = SITE_OPTION,
    auto: bool = typer.Option(
        False, "--auto", help="Choose the config by a bounded search on the validation split."
    ),
    budget: float = typer.Option(
        None, "--budget", min=1, help="Seconds --auto may search (default: the product's)."
    ),
    update: str = UPDATE_OPTION,
    images: Path = IMAGES_OPTION,
    reviewed: bool = REVIEWED_OPTION,
    parent: str = PARENT_OPTION,
    allow_duplicates: bool = typer.Option(
        False, "--allow-duplicates", help="Train although test images copy training images."
    ),
    verbose: bool = VERBOSE_OPTION,
) -> None:
    """Train a model, evaluate it on the held-out test split, write the report, register it.

    ``--update <product>`` instead adds good images to the product's PatchCore memory bank
    (no full refit) and registers the result as a new version with its lineage.
    """
    _offline()
    if update:
        from inspection.cli.update import update_command

        update_command(
            load_site_config(site), update, images=images, reviewed=reviewed, parent=parent,
            data=data,
        )  # fmt: skip
        return
    if not product:
        raise typer.BadParameter("give --product (or --update <product> to add images)")
    from inspection.core.product_config import (
        load_model_config,
        load_product_config,
        product_config_path,
    )
    from inspection.core.registry import Registry

    site_config = load_site_config(site)
    product_config = load_product_config(product, site_config.configs)
    auto = auto or product_config.auto
    if auto and (config is not None or overrides):
        raise typer.BadParameter("--auto chooses the config: drop --config and --set")
    # before the dataset check: a typo in --model or --set answers at once
    model_config = None if auto else load_model_config(
        model, product=product, config_file=config, overrides=overrides,
        directory=site_config.configs,
    )  # fmt: skip
    dataset = checked_dataset(
        _dataset_path(site_config, product, data),
        allow_duplicates=allow_duplicates,
        image_bits=product_config.image_bits,
        product_file=product_config_path(product, site_config.configs),
    )
    if model_config is None:
        budget_s = budget or product_config.auto_budget_s
        console.print(configs_line(site_config), soft_wrap=True, highlight=False)
        _train_auto(site_config, product, dataset, budget_s)
        return
    _print_configs(site_config, model)
    # torch and anomalib load here, after the arguments and the images are checked
    from inspection.training.evaluate import write_report
    from inspection.training.train import train_model

    if product_config.tiling is not None:
        registry = Registry(site_config.registry_dir)
        _train_tiled(model_config, product_config, dataset, product, registry)
        return
    verbose = verbose_requested(verbose)
    with (
        quiet_logs(log_dir(site_config), "train", verbose=verbose) as log_file,
        StepProgress(console, f"train {product}", 1) as progress,
    ):
        progress.task(
            f"{model}: {len(dataset.train_samples)} train images at "
            f"{model_config.image_size[0]}x{model_config.image_size[1]} px"
        )
        outcome = train_model(
            model_config, dataset, product=product, registry=Registry(site_config.registry_dir),
            progress=verbose, roi=product_config.roi,
        )  # fmt: skip
        write_report(_report_dir(site_config, outcome.record), outcome.predictions, outcome.metrics)
        progress.done()
    _print_metrics([(outcome.record, outcome.metrics)])
    console.print(f"registered {outcome.record.model_version}")
    print_table(
        console, summary_table("next", _closing_rows(site_config, log_file, [outcome.record]))
    )
    _print_log_file(log_file)


def _train_tiled(
    config: Any, product_config: Any, dataset: Any, product: str, registry: Any
) -> None:
    """The product's ``tiling`` is set: one model over every tile (``training.tiled``)."""
    from inspection.training.tiled import train_tiled

    tiling = product_config.tiling

    console.print(
        f"tiled: {list(tiling.tile_size)} px tiles, stride {list(tiling.stride)}, "
        f"scale {tiling.scale}, {tiling.blend} blending"
    )
    record = train_tiled(
        config, tiling, dataset, product=product, registry=registry, roi=product_config.roi
    )
    _print_metrics([(record, record.evaluation())])
    console.print(f"registered {record.model_version} (tiled; export it to measure the bundle)")


def _train_auto(site_config: SiteConfig, product: str, dataset: Dataset, budget_s: float) -> None:
    """``train --auto``: search, report every candidate, train and register the winner."""
    from rich.progress import Progress

    from inspection.core.registry import Registry
    from inspection.training.auto import (
        DEFAULT_GRID,
        product_configure,
        search,
        train_winner,
        write_search_report,
    )
    from inspection.training.evaluate import write_report

    console.print(f"auto search on {product}: {len(DEFAULT_GRID)} candidates, {budget_s:.0f} s")
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("candidates", total=len(DEFAULT_GRID))

        def on_candidate(result: Any) -> None:
            progress.advance(task)
            score = "" if result.validation_auroc is None else f" {result.validation_auroc:.3f}"
            console.print(f"  {result.name}: {result.status}{score} ({result.seconds:.0f} s)")

        result = search(
            product, dataset, budget_s=budget_s, on_candidate=on_candidate,
            configure=product_configure(product, site_config.configs),
        )  # fmt: skip
    summary = write_search_report(site_config.reports_dir / product / "auto", result)
    console.print(f"winner: [bold]{result.winner}[/] ({result.rule}); search: {summary}")
    outcome = train_winner(
        result, dataset, Registry(site_config.registry_dir), configs_dir=site_config.configs
    )
    report = write_report(
        _report_dir(site_config, outcome.record), outcome.predictions, outcome.metrics
    )
    _print_metrics([(outcome.record, outcome.metrics)])
    console.print(f"registered {outcome.record.model_version}; report: {report}")


# ------------------------------------------------------------------------ evaluate


def evaluate_command(
    product: str = typer.Argument(..., help="Product name."),
    version: str = typer.Argument(None, help="Model version, e.g. v0002 (default: latest)."),
    data: Path = EVAL_DATA_OPTION,
    site: str = SITE_OPTION,
) -> None:
    """Re-evaluate a registered version on its held-out test split and write a report."""
    _offline()
    from inspection.core.product_config import model_config_from_mapping
    from inspection.core.registry import Registry
    from inspection.data.dataset import load_dataset
    from inspection.training.evaluate import metrics_of_predictions, predict, write_report
    from inspection.training.train import evaluation_splits, load_trained_model

    site_config = load_site_config(site)
    registry = Registry(site_config.registry_dir)
    record = registry.version(product, version) if version else registry.latest_version(product)
    dataset = load_dataset(data or record.dataset_root())
    if dataset.fingerprint()["sha256"] != record.dataset_ref().sha256:
        console.print("[yellow]warning:[/] the dataset changed since this model was trained")
    config = model_config_from_mapping(record.config, where=record.model_version)
    _, test = evaluation_splits(config, dataset)
    model = load_trained_model(record)
    predictions = predict(model, test, image_size=config.image_size, bits=config.image_bits)
    metrics = metrics_of_predictions(predictions, record.calibration())
    report = write_report(_report_dir(site_config, record) / "evaluate", predictions, metrics)
    _print_metrics([(record, metrics)])
    console.print(f"report: {report}")


# ---------------------------------------------------------------------------- demo


@dataclass
class DemoContext:
    """State shared by the demo steps."""

    site: SiteConfig
    products: list[str]
    models: list[str]
    overrides: list[str] = field(default_factory=list)  # --set, applied to every model
    results: list[ModelRecord] = field(default_factory=list)  # the trained versions
    checks: list[Any] = field(default_factory=list)  # runtime.self_check.LiveCheck per product
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # shown loudly, not fatal
    failures: list[str] = field(default_factory=list)  # make the demo exit non-zero
    verbose: bool = False  # raw library output (Lightning progress bars, INFO logs)
    refine: RefineConfig | None = None  # the site's refine.yaml, read at start (export step)

    @property
    def registry(self) -> Any:
        from inspection.core.registry import Registry

        return Registry(self.site.registry_dir)


def step_data(ctx: DemoContext) -> None:
    """Write the demo products (MVTec AD layout) that are not there yet."""
    from inspection.data.demo import write_demo

    missing = [p for p in ctx.products if not (ctx.site.datasets_dir / p / "train").is_dir()]
    if not missing:
        console.print(f"demo data present in {ctx.site.datasets_dir}")
        return
    with console.status(f"writing demo data for {', '.join(missing)}"):
        write_demo(ctx.site.datasets_dir, missing)
    console.print(f"wrote demo data: {', '.join(missing)} in {ctx.site.datasets_dir}")


def step_train(ctx: DemoContext) -> None:
    """Train every model on every product, evaluate, write the reports, register."""
    from inspection.core.product_config import load_model_config, load_product_config
    from inspection.data.dataset import load_dataset
    from inspection.training.evaluate import write_report
    from inspection.training.train import train_model

    total = len(ctx.products) * len(ctx.models)
    configs = ctx.site.configs
    console.print(configs_line(ctx.site), soft_wrap=True, highlight=False)
    with StepProgress(console, "train", total) as progress:
        for product in ctx.products:
            dataset = load_dataset(ctx.site.datasets_dir / product)
            for kind in ctx.models:
                progress.task(f"{product}: {kind} ({len(dataset.train_samples)} images)")
                config = load_model_config(
                    kind, product=product, overrides=ctx.overrides, directory=configs
                )
                outcome = train_model(
                    config, dataset, product=product, registry=ctx.registry,
                    progress=ctx.verbose, roi=load_product_config(product, configs).roi,
                )  # fmt: skip
                write_report(
                    _report_dir(ctx.site, outcome.record), outcome.predictions, outcome.metrics
                )
                ctx.results.append(outcome.record)
                progress.done()


def demo_precisions() -> tuple[str, ...]:
    """FP32 and INT8, plus bf16 where this CPU executes it (the tuner then measures all)."""
    from inspection.runtime.hardware import cpu_info

    return ("fp32", "int8") if cpu_info().unavailable("bf16") else ("fp32", "bf16", "int8")


def step_export(ctx: DemoContext) -> None:
    """Export each product's best model (image AUROC) to FP32, INT8 (and bf16) bundles, then serve
    the precision that is fastest on this CPU among those that passed the accuracy gate."""
    try:
        from inspection.core.export_gate import GateRefusal
        from inspection.training.export import ExportOptions
        from inspection.training.registry_export import RegistryExport, export_bundle
    except ImportError as exc:
        log.info("export step skipped: %s", exc)
        return
    from inspection.core.signing import sign_bundle
    from inspection.refine.config import RefineConfig
    from inspection.runtime.tuning import promote_fastest

    signing_key = _site_signing_key(ctx)
    for product in ctx.products:
        records = [r for r in ctx.results if r.product == product]
        if not records:
            continue
        best = max(records, key=lambda r: r.evaluation().image_auroc or 0.0)
        exported = []
        for precision in demo_precisions():
            with console.status(f"{product}: exporting {best.version} ({precision})") as status:
                try:
                    result = export_bundle(
                        ctx.registry,
                        product,
                        ExportOptions(precision=precision, refine=ctx.refine or RefineConfig()),
                        RegistryExport(version=best.version, configs_dir=ctx.site.configs),
                        progress=lambda message, s=status: s.update(message),
                    )
                except (GateRefusal, BundleError, RegistryError) as exc:
                    # A refused INT8 bundle leaves the FP32 one live: noted, not fatal.
                    ctx.notes.append(f"{product} {precision} export not registered: {exc}")
                    continue
            sign_bundle(result.bundle_dir, signing_key)
            exported.append(result.bundle_id)
            auroc = result.metadata.evaluation().image_auroc
            shown = "n/a" if auroc is None else f"{auroc:.3f}"
            ctx.notes.append(f"{product}: bundle {result.bundle_id} image AUROC {shown}")
        if not exported:
            continue
        ctx.registry.promote(product, exported[0], actor="demo", reason="inspection demo")
        with console.status(f"{product}: timing the gated bundles on this CPU") as status:
            record = promote_fastest(
                ctx.registry,
                product,
                actor="demo",
                progress=status.update,
                public_key=signing_key.public_key(),
            )
        timings = ", ".join(f"{m.precision} {m.p50_ms:.1f} ms" for m in record.measurements)
        ctx.notes.append(
            f"{product}: live bundle {record.chosen_bundle_id} (fastest gated here: {timings})"
        )


def _site_signing_key(ctx: DemoContext) -> Any:
    """The site's Ed25519 signing key (``<var>/keys``), created on the first run and pinned
    in the station and line configs beside the site config."""
    from inspection.cli.keys import pin_in_configs, site_station_configs
    from inspection.core.signing import (
        PRIVATE_KEY_FILE,
        PUBLIC_KEY_FILE,
        init_keys,
        load_private_key,
        site_keys_dir,
    )

    folder = site_keys_dir(ctx.site.registry_dir)
    if not (folder / PRIVATE_KEY_FILE).is_file():
        keys = init_keys(folder)
        ctx.notes.append(f"created the site signing key {keys.private}")
    ctx.notes.extend(pin_in_configs(folder / PUBLIC_KEY_FILE, site_station_configs(ctx.site)))
    return load_private_key(folder / PRIVATE_KEY_FILE)


def step_inspect(ctx: DemoContext) -> None:
    """Judge each product's labelled parts with its live bundle on the torch-free runtime.

    The live bundle must judge them as its export gate measured (false-reject and miss rates
    within tolerance of FP32, no NG without a region); otherwise the demo fails at the end.
    """
    try:
        from inspection.runtime.self_check import LabelledPath, check_live_bundle
    except ImportError as exc:
        log.info("inspect step skipped: %s", exc)
        return
    from inspection.data.dataset import load_dataset
    from inspection.training.registry_export import held_out_test_samples

    for product in ctx.products:
        live = ctx.registry.live(product)
        if live is None:
            continue
        bundle_dir = ctx.registry.live_bundle_dir(product)
        record = ctx.registry.bundle_record(product, live.bundle_id)
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
        if concerns := check.line_concerns():
            op = check.operating
            budget = op is not None and op.policy == "false_reject_budget"
            point = f" at its {op.budget:.1%} false-reject budget" if budget else ""
            ctx.warnings.append(
                f"{product}: the live bundle{point} {' and '.join(concerns)} on held-out "
                "parts; the model does not separate these well enough for a line (see its "
                "report)"
            )
        if not check.passed:
            ctx.failures.append(f"{product}: live bundle misjudges its parts: {check.summary()}")


DemoStep = Callable[[DemoContext], None]
# The README main job, in order. Append steps here (export and inspect come from other modules).
DEMO_STEPS: list[tuple[str, DemoStep]] = [
    ("data", step_data),
    ("train", step_train),
    ("export", step_export),
    ("inspect", step_inspect),
]


def demo_command(
    products: str = typer.Option(",".join(DEMO_PRODUCTS), "--products", help="Comma-separated."),
    models: str = typer.Option(",".join(DEMO_MODELS), "--models", help="Comma-separated."),
    skip: str = typer.Option("", "--skip", help="Steps to skip, e.g. export,inspect."),
    overrides: list[str] = SET_OPTION,
    site: str = SITE_OPTION,
    verbose: bool = VERBOSE_OPTION,
) -> None:
    """Main job: demo data -> train PatchCore + STFPM -> evaluate -> export -> inspect."""
    from inspection.refine.config import refine_config_in

    _offline()
    site_config = load_site_config(site)
    ctx = DemoContext(
        site_config,
        [p.strip() for p in products.split(",") if p.strip()],
        [m.strip() for m in models.split(",") if m.strip()],
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
    print_table(console, summary_table(title, _closing_rows(ctx.site, log_file, ctx.results)))
    _print_log_file(log_file)
    for warning in ctx.warnings:
        console.print(f"[bold yellow]NOT LINE-READY[/] {warning}")
    if ctx.failures:
        for failure in ctx.failures:
            console.print(f"[bold red]FAILED[/] {failure}")
        raise typer.Exit(1)


# -------------------------------------------------------------------------- output


def _print_configs(site: SiteConfig, kind: str) -> None:
    """The configs folder train reads, and where the model defaults came from when not there."""
    from inspection.core.product_config import model_defaults_path

    line = configs_line(site)
    defaults = model_defaults_path(kind, site.configs)
    if defaults is None:
        line += f"; model defaults: built-in (no models/{kind}.yaml)"
    elif defaults.parent.parent.resolve() != site.configs.resolve():
        line += f"; model defaults: {defaults}"
    console.print(line, soft_wrap=True, highlight=False)


def _print_log_file(log_file: Path | None) -> None:
    if log_file is not None:  # one unwrapped line, easy to copy
        console.print(f"library logs and warnings: {log_file}", soft_wrap=True, highlight=False)


def _closing_rows(
    site: SiteConfig, log_file: Path | None, records: list[Any]
) -> list[tuple[str, str]]:
    reports = sorted({str(_report_dir(site, r)) for r in records})
    rows = [
        ("reports", "\n".join(reports) or str(site.reports_dir)),
        ("", "metrics.json and plots (ROC, score histogram, worst maps) per model"),
        ("model registry", str(site.registry_dir)),
        ("log file", str(log_file) if log_file else "(--verbose: logs were shown above)"),
        ("open next", "inspection dashboard   (review results, models, thresholds)"),
    ]
    return rows


def station_check_table(checks: list[Any]) -> Table:
    """Live bundles on held-out parts through the station runtime: operating point, good
    parts rejected, miss per defect kind with its 95 % interval."""
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


def _print_metrics(rows: list[tuple[ModelRecord, EvaluationMetrics]]) -> None:
    table = Table(
        "model", "kind", "img AUROC", "px AUROC", "AUPRO", "img F1", "px F1", "region recall",
        "NG w/o region", "fit s",
    )  # fmt: skip
    for column in table.columns[:2]:
        column.no_wrap = True
    for record, metrics in rows:
        o = metrics.overall
        table.add_row(
            record.model_version,
            record.model_kind,
            *(_fmt(v) for v in (o.image_auroc, o.pixel_auroc, o.aupro, o.image_f1, o.pixel_f1)),
            _fmt(o.region_recall),
            "-" if o.ng_without_region is None else str(o.ng_without_region),
            _fmt(record.fit_figures().fit_seconds, 1),
        )
    print_table(console, table)
    print_table(console, operating_table(rows))


def operating_table(rows: list[tuple[ModelRecord, EvaluationMetrics]]) -> Table:
    """Per model: its operating point, good parts rejected and miss per defect kind (held-out)."""
    table = Table("model", "operating point", "false reject", "miss per defect kind [95 %]")
    for record, metrics in rows:
        o = metrics.overall
        rejected = "-" if o.false_reject_rate is None else f"{o.false_reject_rate:.1%}"
        table.add_row(
            record.model_version,
            operating_text(metrics.calibration.operating if metrics.calibration else None),
            f"{rejected} of {o.n_good}" if o.n_good is not None else rejected,
            subset_miss_text(metrics),
        )
    return table  # logs and CI: never let the figures collapse to '1.…'


def _fmt(value: object, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
    app.command("evaluate")(evaluate_command)
    app.command("demo")(demo_command)
