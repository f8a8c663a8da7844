"""``inspection station``: commands run on a line station (torch-free).

inspection station tune --product brick      # time FP32/FP16/INT8 here, serve the fastest
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from inspection.core.config import load_site_config
from inspection.core.errors import RegistryError
from inspection.core.registry import Registry

station_app = typer.Typer(help="Line-station commands (no torch needed).", no_args_is_help=True)
console = Console()


PRODUCTS_OPTION = typer.Option(
    None, "--product", "-p", help="Product(s) to tune (default: every product with a live bundle)."
)
IMAGES_OPTION = typer.Option(
    None, "--images", help="Folder of part images to time on (default: a synthetic part)."
)
SITE_OPTION = typer.Option(None, "--site", help="Site config YAML (default: configs/site.yaml).")


@station_app.command("tune")
def tune_command(
    products: list[str] = PRODUCTS_OPTION,
    images: Path = IMAGES_OPTION,
    samples: int = typer.Option(40, "--samples", min=5, help="Batch-1 timings per bundle."),
    site: str = SITE_OPTION,
) -> None:
    """Measure every gated bundle of each live model on this CPU and record the fastest.

    The station service serves the recorded choice (visible in /healthz, /metrics and the
    dashboard's Models page); a later promotion makes the record stale until tuned again.
    """
    from inspection.core.images import read_image
    from inspection.runtime.hardware import cpu_info
    from inspection.runtime.inspector import expand_paths
    from inspection.runtime.tuning import tune_product, tuning_path

    registry = Registry(load_site_config(site).registry_dir)
    names = products or [p for p in registry.products() if registry.live(p) is not None]
    if not names:
        raise RegistryError(f"no product in {registry.root} has a live bundle; promote one first")
    probe = [read_image(p) for p in expand_paths([images])][:16] if images else None
    if images and not probe:
        raise typer.BadParameter(f"no images in {images}", param_hint="--images")
    cpu = cpu_info()
    console.print(f"CPU: {cpu.summary()}; OpenVINO {cpu.openvino}: {', '.join(cpu.capabilities)}")
    for product in names:
        with console.status(f"{product}: measuring") as status:
            record = tune_product(
                registry, product, images=probe, samples=samples, progress=status.update
            )
        table = Table("bundle", "precision", "p50 ms", "p95 ms", "img/s", "gate", "served")
        for m in record.measurements:
            served = "yes" if m.bundle_id == record.chosen_bundle_id else ""
            table.add_row(
                m.bundle_id, m.precision, f"{m.p50_ms:.1f}", f"{m.p95_ms:.1f}",
                f"{m.throughput_ips:.0f}", m.gate_note, served,
            )  # fmt: skip
        console.print(table)
        console.print(
            f"{product}: serving [bold]{record.chosen_bundle_id}[/] (load {record.load_1m}); "
            f"recorded in {tuning_path(registry, product, cpu)}"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(station_app, name="station")
