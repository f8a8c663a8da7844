"""``inspection models``: list and show registry versions, bundles and the live pointer."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from inspection.cli._site import SITE_OPTION, ProductArg, group, site_registry
from inspection.cli.console import print_table, screen
from inspection.cli.operating import fmt, version_readiness

models_app = group("models", "Browse the model registry.")
console = screen()


@models_app.command("list")
def list_models(
    product: str = typer.Option(None, "--product", "-p", help="Only this product."),
    site: str = SITE_OPTION,
) -> None:
    """List model versions with their key metrics, the verdict ``train`` gave each on its
    held-out parts (LINE-READY or NOT LINE-READY), and the live bundle per product."""
    registry = site_registry(site)
    table = Table(
        "product", "version", "model", "created (UTC)", "image AUROC", "pixel AUROC", "AUPRO",
        "verdict", "live",
    )  # fmt: skip
    for name in [product] if product else registry.bundles.products():
        live = registry.journal.live(name)
        for record in registry.bundles.versions(name):
            metrics = record.evaluation()
            overall = metrics.overall
            is_live = live is not None and live.bundle_id.startswith(record.version + "-")
            table.add_row(
                name,
                record.version,
                record.model_kind,
                record.created_at[:16].replace("T", " "),  # to the minute, UTC
                *(fmt(v) for v in (overall.image_auroc, overall.pixel_auroc, overall.aupro)),
                version_readiness(name, record.version, metrics).word,
                live.bundle_id if is_live else "",
            )
    print_table(console, table)  # uncut in a log or pipe


@models_app.command("show")
def show_model(
    product: ProductArg,
    version: str = typer.Argument(None, help="Version such as v0001 (default: latest)."),
    site: str = SITE_OPTION,
) -> None:
    """Print a version's full record as JSON (config, dataset fingerprint, metrics, packages)."""
    registry = site_registry(site)
    record = registry.bundles.version(product, version)
    data = {k: v for k, v in record.__dict__.items() if k != "path"}
    data["dataset"] = {k: v for k, v in record.dataset.items() if k != "files"}
    data["path"] = str(record.path)
    data["bundles"] = [
        b for b in registry.bundles.bundle_ids(product) if b.startswith(record.version + "-")
    ]
    console.print_json(json.dumps(data, default=str))
