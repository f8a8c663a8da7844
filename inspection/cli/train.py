"""``inspection train`` and ``inspection evaluate`` (``inspection demo``: ``cli.demo``)."""

from __future__ import annotations

import logging
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from inspection.cli._site import SITE_OPTION, ProductArg
from inspection.cli.console import (
    StepProgress,
    configs_line,
    log_dir,
    print_log_file,
    print_table,
    quiet_logs,
    screen,
    summary_table,
    verbose_requested,
)
from inspection.cli.data import check_with_progress
from inspection.cli.operating import (
    fmt,
    operating_text,
    rate_of,
    subset_miss_text,
    train_verdict,
)
from inspection.core.config import SiteConfig, load_site_config
from inspection.core.errors import DatasetError
from inspection.core.fingerprint import shown_name
from inspection.core.images import list_images
from inspection.core.model_record import ModelRecord
from inspection.core.product_config import (
    ModelConfig,
    ProductConfig,
    load_model_config,
    load_product_config,
    model_config_from_mapping,
    model_defaults_path,
    product_config_path,
)
from inspection.core.registry import Registry
from inspection.data.check import REFUSE_TRAINING, Problem
from inspection.data.dataset import Dataset, load_dataset
from inspection.data.leaks import listed

if TYPE_CHECKING:
    from inspection.core.metrics import EvaluationMetrics
    from inspection.core.tiling import TilingSpec

console = screen()
commands = typer.Typer()
log = logging.getLogger(__name__)

DATA_OPTION = typer.Option(None, "--data", help="Dataset folder or spec (default: product's).")
CONFIG_OPTION = typer.Option(None, "--config", help="YAML of model config overrides.")
SET_OPTION = typer.Option(
    [], "--set", help="Override a config key, e.g. --set max_epochs=5 (repeatable)."
)
EVAL_DATA_OPTION = typer.Option(
    None, "--data", help="Dataset (default: the one it was trained on)."
)
IMAGES_OPTION = typer.Option(None, "--images", help="With --update: folder of good images.")
VERBOSE_OPTION = typer.Option(
    False, "--verbose", help="Show library logs, warnings and progress bars (else: a log file)."
)


def _offline() -> None:
    """Nothing in training may download at run time."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


LEAK_CODE = "train_test_duplicate"
"""The ``data check`` finding that refuses training."""


def checked_dataset(
    path: Path,
    *,
    allow_duplicates: bool = False,
    image_bits: int | None = None,
    image_range: tuple[float, float] | None = None,
    product_file: Path | None = None,
    tiling: TilingSpec | None = None,
) -> Dataset:
    """The dataset at ``path`` after ``inspection data check``'s checks: unreadable files (by
    their header, then by decoding them as training will), broken links, images smaller than a
    ``tiling`` tile and train/test duplicates refuse it; other findings are summarised and
    training goes on."""
    dataset = load_dataset(path)
    dataset.check_readable()  # header probe: all unreadable files in one error, at once
    report = check_with_progress(
        dataset, "checking", image_bits=image_bits, image_range=image_range,
        product_file=product_file,
        keep_decoded=True,  # the training reads them from there: each image decoded once
        tiling=tiling,
    )  # fmt: skip
    refused = [p for p in report.errors if p.code in REFUSE_TRAINING]
    if refused:
        files = listed([f"{shown_name(p.path)}: {p.message}" for p in refused], sep="; ")
        raise DatasetError(f"{len(refused)} file(s) cannot be trained on: {files}")
    leaks = [p for p in report.errors if p.code == LEAK_CODE]
    if leaks and not allow_duplicates:
        copies = listed([f"{shown_name(p.path)}: {p.message}" for p in leaks], sep="; ")
        raise DatasetError(
            f"{len(leaks)} test image(s) copy training images ({copies}). They would "
            "inflate every held-out figure and bias the threshold: remove them from test/, or "
            "pass --allow-duplicates"
        )
    _print_findings(path, [p for p in report.problems if p.code != LEAK_CODE or allow_duplicates])
    return dataset


def _print_findings(path: Path, problems: list[Problem]) -> None:
    if not problems:
        return
    errors = sum(p.severity == "error" for p in problems)
    console.print(
        f"[yellow]data check: {errors} error(s), {len(problems) - errors} warning(s); "
        f"training goes on. `inspection data check {path}` lists them all:[/]"
    )
    for problem in problems[:3]:
        shown = f"{problem.severity}: {shown_name(problem.path)}: {problem.message}"
        console.print(f"  {shown}", highlight=False)


def _report_dir(site: SiteConfig, record: ModelRecord) -> Path:
    return site.reports_dir / record.product / f"{record.version}-{record.model_kind}"


# --------------------------------------------------------------------------- train


@commands.command("train")
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
    update: str = typer.Option(
        None, "--update", help="Add good images to this product's PatchCore bank (no full refit)."
    ),
    images: Path = IMAGES_OPTION,
    reviewed: bool = typer.Option(
        False, "--reviewed", help="With --update: images reviewed good since the parent version."
    ),
    parent: str = typer.Option(None, "--parent", help="With --update: version (default: latest)."),
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
        update_command(
            load_site_config(site), update, images=images, reviewed=reviewed, parent=parent,
            data=data,
        )  # fmt: skip
        return
    if not product:
        raise typer.BadParameter("give --product (or --update <product> to add images)")

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
        data or product_config.data or site_config.datasets_dir / product,
        allow_duplicates=allow_duplicates,
        image_bits=product_config.image_bits,
        image_range=product_config.image_range,
        product_file=product_config_path(product, site_config.configs),
        tiling=product_config.tiling,
    )
    if model_config is None:
        _train_auto(site_config, product, dataset, budget or product_config.auto_budget_s)
        return
    _print_configs(site_config, model)
    # deferred: torch, anomalib, lightning, timm, after the arguments and images are checked
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
            progress=verbose, roi=product_config.roi, stages=progress.stage,
        )  # fmt: skip
        write_report(_report_dir(site_config, outcome.record), outcome.predictions, outcome.metrics)
        outcome.clock.lap("report")
        outcome.clock.log()
        progress.done()
    _print_metrics([(outcome.record, outcome.metrics)])
    console.print(f"registered {outcome.record.model_version}")
    print_table(
        console, summary_table("next", _closing_rows(site_config, log_file, [outcome.record]))
    )
    print_log_file(console, log_file)
    _print_advice(outcome.record, outcome.metrics)


def _train_tiled(
    config: ModelConfig, product_config: ProductConfig, dataset: Dataset, product: str,
    registry: Registry,
) -> None:  # fmt: skip
    """The product's ``tiling`` is set: one model over every tile (``training.tiled``)."""
    # deferred: torch, anomalib, openvino, spared by --help and the other commands
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
    _print_advice(record, record.evaluation())


def _train_auto(site_config: SiteConfig, product: str, dataset: Dataset, budget_s: float) -> None:
    """``train --auto``: search, report every candidate, train and register the winner."""
    # deferred: torch, anomalib, lightning, timm, spared by --help and the other commands
    from inspection.training import auto
    from inspection.training.evaluate import write_report

    console.print(configs_line(site_config), soft_wrap=True, highlight=False)
    console.print(
        f"auto search on {product}: {len(auto.DEFAULT_GRID)} candidates, {budget_s:.0f} s"
    )
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("candidates", total=len(auto.DEFAULT_GRID))

        def on_candidate(result: Any) -> None:
            progress.advance(task)
            score = "" if result.validation_auroc is None else f" {result.validation_auroc:.3f}"
            console.print(f"  {result.name}: {result.status}{score} ({result.seconds:.0f} s)")

        result = auto.search(
            product, dataset, budget_s=budget_s, on_candidate=on_candidate,
            configure=auto.product_configure(product, site_config.configs),
        )  # fmt: skip
    summary = auto.write_search_report(site_config.reports_dir / product / "auto", result)
    console.print(
        f"{result.scored} of {len(result.candidates)} candidates scored, each fitted on "
        f"{result.search_images} of {len(dataset.train_samples)} training images"
    )
    console.print(f"winner: [bold]{result.winner}[/] ({result.rule}); search: {summary}")
    outcome = auto.train_winner(
        result, dataset, Registry(site_config.registry_dir), configs_dir=site_config.configs
    )
    report = write_report(
        _report_dir(site_config, outcome.record), outcome.predictions, outcome.metrics
    )
    _print_metrics([(outcome.record, outcome.metrics)])
    console.print(f"registered {outcome.record.model_version}; report: {report}")
    _print_advice(outcome.record, outcome.metrics)


def update_command(
    site: SiteConfig,
    product: str,
    *,
    images: Path | None,
    reviewed: bool,
    parent: str | None,
    data: Path | None,
) -> ModelRecord:
    """``train --update``: good images from ``--images DIR`` or ``--reviewed`` ones (since the
    parent version) join a PatchCore bank; prints what changed, returns the new version."""
    # deferred: torch (the training side)
    from inspection.training.evaluate import write_report
    from inspection.training.incremental import update_bank

    if (images is None) == (not reviewed):
        raise typer.BadParameter("give exactly one of --images DIR or --reviewed")
    if images is not None and not images.is_dir():
        reason = "is not a folder" if images.exists() else "does not exist"
        raise typer.BadParameter(f"{images} {reason}", param_hint="--images")
    registry = Registry(site.registry_dir)
    source = registry.bundles.version(product, parent)
    paths = list_images(images) if images is not None else reviewed_good(site, source)
    if not paths:
        console.print(
            f"no new good images for {product} since {source.model_version}: nothing to do"
        )
        raise typer.Exit(0)
    with (
        quiet_logs(log_dir(site), "update", verbose=verbose_requested(False)) as log_file,
        console.status(f"updating {source.model_version} with {len(paths)} images") as status,
    ):
        outcome = update_bank(
            registry, product, paths, version=source.version,
            dataset=load_dataset(data) if data else None, progress=status.update,
        )  # fmt: skip
        record = outcome.record
        metrics = record.evaluation()
        report = write_report(_report_dir(site, record), outcome.predictions, metrics)
    print_log_file(console, log_file)
    lineage = outcome.lineage
    console.print(
        f"registered {record.model_version} from {source.version} in {outcome.seconds:.1f} s: "
        f"+{lineage.added_images} images, bank {lineage.bank_rows_before} -> "
        f"{lineage.bank_rows_after} rows; test image AUROC "
        f"{metrics.image_auroc}; report: {report}"
    )
    _print_advice(record, metrics)
    return record


def reviewed_good(site: SiteConfig, since: ModelRecord) -> list[Path]:
    """Blob files of ``product``'s inspections reviewed good after ``since`` was created."""
    # deferred: SQLAlchemy and Alembic, not needed for --help
    from inspection.store.store import Store

    store = Store(site.store_url, site.blob_dir)
    store.check_schema()
    after = datetime.fromisoformat(since.created_at)
    rows = store.reviewed(since.product, ["good"], since=after)
    paths = []
    for row in rows:
        try:
            paths.append(store.blobs.checked_path(row.image_sha))
        except FileNotFoundError:
            console.print(f"[yellow]inspection {row.id}: image blob missing, left out[/]")
    return paths


# ------------------------------------------------------------------------ evaluate


@commands.command("evaluate")
def evaluate_command(
    product: ProductArg,
    version: str = typer.Argument(None, help="Model version, e.g. v0002 (default: latest)."),
    data: Path = EVAL_DATA_OPTION,
    site: str = SITE_OPTION,
) -> None:
    """Re-evaluate a registered version on its held-out test split and write a report."""
    _offline()
    # deferred: torch, anomalib, lightning, timm, spared by --help and the other commands
    from inspection.training.evaluate import metrics_of_predictions, predict, write_report
    from inspection.training.train import evaluation_splits, load_trained_model

    site_config = load_site_config(site)
    registry = Registry(site_config.registry_dir)
    record = registry.bundles.version(product, version)
    dataset = load_dataset(data or record.dataset_root())
    if dataset.fingerprint()["sha256"] != record.dataset_ref().sha256:
        console.print("[yellow]warning:[/] the dataset changed since this model was trained")
    config = model_config_from_mapping(record.config, where=record.model_version)
    _, test = evaluation_splits(config, dataset)
    model = load_trained_model(record)
    predictions = predict(
        model, test, image_size=config.image_size, bits=config.image_bits,
        value_range=config.image_range,
    )  # fmt: skip
    metrics = metrics_of_predictions(predictions, record.calibration())
    report = write_report(_report_dir(site_config, record) / "evaluate", predictions, metrics)
    _print_metrics([(record, metrics)])
    console.print(f"report: {report}")


# -------------------------------------------------------------------------- output


def _print_configs(site: SiteConfig, kind: str) -> None:
    """The configs folder train reads, and where the model defaults came from if not there."""
    line = configs_line(site)
    defaults = model_defaults_path(kind, site.configs)
    if defaults is None:
        line += f"; model defaults: built-in (no models/{kind}.yaml)"
    elif defaults.parent.parent.resolve() != site.configs.resolve():
        line += f"; model defaults: {defaults}"
    console.print(line, soft_wrap=True, highlight=False)


def _closing_rows(
    site: SiteConfig, log_file: Path | None, records: list[ModelRecord], next_step: str = ""
) -> list[tuple[str, str]]:
    reports = sorted({str(_report_dir(site, r)) for r in records})
    if not next_step:  # a command that trained: export is next
        first = records[0]
        next_step = f"inspection export --product {first.product} --version {first.version}"
    return [
        ("reports", "\n".join(reports) or str(site.reports_dir)),
        ("", "metrics.json and plots (ROC, score histogram, worst maps) per model"),
        ("model registry", str(site.registry_dir)),
        ("log file", str(log_file) if log_file else "(--verbose: logs were shown above)"),
        ("next", next_step),
    ]


def _print_metrics(rows: list[tuple[ModelRecord, EvaluationMetrics]]) -> None:
    table = Table(
        "model", "kind", "img AUROC", "px AUROC", "AUPRO", "img F1", "px F1", "region recall",
        "NG w/o region", "fit s",
    )  # fmt: skip
    for column in table.columns[:2]:
        column.no_wrap = True
    for record, metrics in rows:
        o = metrics.overall
        f1s = (o.image_f1, o.pixel_f1) if o.n_defective else (None, None)  # no defect: no F1
        table.add_row(
            record.model_version,
            record.model_kind,
            *(fmt(v) for v in (o.image_auroc, o.pixel_auroc, o.aupro, *f1s)),
            fmt(o.region_recall),
            "-" if o.ng_without_region is None else str(o.ng_without_region),
            fmt(record.fit_figures().fit_seconds, 1),
        )
    print_table(console, table)
    print_table(console, operating_table(rows))
    for record, _ in rows:
        head = record.extra.get("supervised")
        if head and not head.get("kept"):
            console.print(
                f"{record.model_version}: mixed model's head dropped, scored as PatchCore: "
                f"{head.get('reason')}",
                highlight=False,
            )


def _print_advice(record: ModelRecord, metrics: EvaluationMetrics | None) -> None:
    advice = train_verdict(record.product, record.version, metrics)
    console.print(f"[bold]{escape(advice)}[/]", soft_wrap=True, highlight=False)


def operating_table(rows: list[tuple[ModelRecord, EvaluationMetrics]]) -> Table:
    table = Table("model", "operating point", "false reject", "miss per defect kind [95 %]")
    for record, metrics in rows:
        o = metrics.overall
        table.add_row(
            record.model_version,
            operating_text(metrics.calibration.operating if metrics.calibration else None),
            rate_of(o.false_reject_rate, o.n_good),
            subset_miss_text(metrics),
        )
    return table  # logs and CI: never let the figures collapse to '1.…'
