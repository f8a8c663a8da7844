"""``inspection export``: turn a trained version into a registered OpenVINO bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from inspection.core.config import load_site_config

console = Console()
PRECISIONS = ("fp32", "fp16", "int8")


def export_command(
    product: str = typer.Option(..., "--product", "-p", help="Product name."),
    version: str = typer.Option(
        None, "--version", help="Model version, e.g. v0003 (default: latest)."
    ),
    precision: str = typer.Option("fp32", "--precision", help="fp32, fp16 or int8."),
    accuracy_control: bool = typer.Option(
        False, "--accuracy-control", help="INT8: let NNCF keep layers in float to bound the drop."
    ),
    max_drop: float = typer.Option(
        0.01, "--max-drop", help="Accuracy control: max image-AUROC drop."
    ),
    tolerance: float = typer.Option(
        0.01, "--tolerance", help="Refuse an INT8 bundle losing more image AUROC than this."
    ),
    force: bool = typer.Option(
        False, "--force", help="Register even if the tolerance is exceeded."
    ),
    promote: bool = typer.Option(False, "--promote", help="Make the new bundle live."),
    calibration_size: int = typer.Option(64, "--calibration-size", help="INT8 calibration images."),
    dataset: Annotated[
        Path | None,
        typer.Option("--dataset", help="Dataset folder (default: the training one)."),
    ] = None,
    site: str = typer.Option(None, "--site", help="Site config YAML (default: configs/site.yaml)."),
) -> None:
    """Export, evaluate on the labelled test split, and register a bundle."""
    from inspection.core.registry import Registry
    from inspection.training.export import export_bundle, image_auroc_of

    if precision not in PRECISIONS:
        raise typer.BadParameter(
            f"must be one of {', '.join(PRECISIONS)}", param_hint="--precision"
        )
    registry = Registry(load_site_config(site).registry_dir)
    with console.status("exporting") as status:
        result = export_bundle(
            registry,
            product,
            precision=precision,  # type: ignore[arg-type]
            version=version,
            dataset_path=dataset,
            calibration_size=calibration_size,
            accuracy_control=accuracy_control,
            max_drop=max_drop,
            tolerance=tolerance,
            force=force,
            promote=promote,
            actor="cli",
            progress=lambda message: status.update(message),
        )
    metrics = result.metrics.get("overall", result.metrics)
    table = Table("bundle", "precision", "image AUROC", "pixel AUROC", "AUPRO", "drop vs FP32")
    drop = result.metrics.get("image_auroc_drop")
    table.add_row(
        f"{product}/{result.bundle_id}",
        precision,
        f"{image_auroc_of(result.metrics):.4f}",
        _fmt(metrics.get("pixel_auroc")),
        _fmt(metrics.get("aupro")),
        _fmt(drop),
    )
    console.print(table)
    console.print(f"bundle: {result.bundle_dir}" + ("  (live)" if promote else ""))


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
