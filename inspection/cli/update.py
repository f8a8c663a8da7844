"""``inspection train --update <product>``: add good images to a PatchCore bank (no full refit).

Images come from a folder (``--images DIR``) or from the site's results store (``--reviewed``:
inspections reviewed ``good`` after the parent version was created). The new version is
registered with its lineage; export and promotion stay separate steps, as after a full train.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer
from rich.console import Console

from inspection.core.config import SiteConfig
from inspection.core.images import list_images
from inspection.core.model_record import ModelRecord
from inspection.core.registry import Registry
from inspection.data.dataset import load_dataset

console = Console()


def update_command(
    site: SiteConfig,
    product: str,
    *,
    images: Path | None,
    reviewed: bool,
    parent: str | None,
    data: Path | None,
) -> ModelRecord:
    """Run the incremental update and print what changed; returns the new version."""
    # deferred: torch (the training side)
    from inspection.training.evaluate import write_report
    from inspection.training.incremental import update_patchcore

    if (images is None) == (not reviewed):
        raise typer.BadParameter("give exactly one of --images DIR or --reviewed")
    if images is not None and not images.is_dir():
        reason = "is not a folder" if images.exists() else "does not exist"
        raise typer.BadParameter(f"{images} {reason}", param_hint="--images")
    registry = Registry(site.registry_dir)
    source = registry.version(product, parent) if parent else registry.latest_version(product)
    paths = list_images(images) if images is not None else reviewed_good(site, source)
    if not paths:
        console.print(
            f"no new good images for {product} since {source.model_version}: nothing to do"
        )
        raise typer.Exit(0)
    with console.status(f"updating {source.model_version} with {len(paths)} images") as status:
        outcome = update_patchcore(
            registry, product, paths, version=source.version,
            dataset=load_dataset(data) if data else None, progress=status.update,
        )  # fmt: skip
    record = outcome.record
    metrics = record.evaluation()
    report = write_report(
        site.reports_dir / product / f"{record.version}-{record.model_kind}",
        outcome.predictions,
        metrics,
    )
    lineage = outcome.lineage
    console.print(
        f"registered {record.model_version} from {source.version} in {outcome.seconds:.1f} s: "
        f"+{lineage.added_images} images, bank {lineage.bank_rows_before} -> "
        f"{lineage.bank_rows_after} rows; test image AUROC "
        f"{metrics.image_auroc}; report: {report}"
    )
    console.print(f"next: inspection export --product {product} --version {record.version}")
    return record


def reviewed_good(site: SiteConfig, since: ModelRecord) -> list[Path]:
    """Blob files of ``product``'s inspections reviewed good after ``since`` was created."""
    # deferred: alembic, sqlalchemy
    from inspection.store.store import Store

    store = Store(site.store_url, site.blob_dir)
    store.check_schema()
    after = datetime.fromisoformat(since.created_at)
    rows = store.reviewed(since.product, ["good"], since=after)
    paths = []
    for row in rows:
        try:
            paths.append(store.blobs.path(row.image_sha))
        except FileNotFoundError:
            console.print(f"[yellow]inspection {row.id}: image blob missing, left out[/]")
    return paths
