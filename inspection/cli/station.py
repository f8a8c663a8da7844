"""``inspection station``: commands run on a line PC next to ``inspection serve``.

inspection station sync --from http://central:8700   # pull the live bundles
inspection station tune                              # time FP32/FP16/INT8 here, serve the fastest
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

console = Console()
station_app = typer.Typer(help="Line-station maintenance commands.", no_args_is_help=True)
TOKEN_ENV = "INSPECTION_REGISTRY_TOKEN"
CONFIG_OPTION = typer.Option(
    Path("configs/station.yaml"), "--config", "-c", help="Station config YAML."
)
TOKEN_FILE_OPTION = typer.Option(
    None, "--token-file", help=f"File holding the station token (default: ${TOKEN_ENV})."
)


@station_app.command("sync")
def sync(
    source: str = typer.Option(
        ..., "--from", help="Central catalog URL (http://host:8700) or a shared registry path."
    ),
    config: Path = CONFIG_OPTION,
    token_file: Path = TOKEN_FILE_OPTION,
    watch: bool = typer.Option(False, "--watch", help="Keep polling (pull on promotion)."),
    interval: float = typer.Option(5.0, "--interval", help="Seconds between polls (--watch)."),
) -> None:
    """Pull the live bundle of every product in the station config into its local registry.

    Downloads are digest-checked before they become live; on any failure the station keeps
    its last good bundle. Exit code 2 when a one-shot sync failed for some product.
    """
    from inspection.distribution.sync import HttpSource, PathSource, sync_forever, sync_once
    from inspection.service.config import load_station_config

    station_config = load_station_config(config)
    if source.startswith(("http://", "https://")):
        token = token_file.read_text(encoding="utf-8").strip() if token_file else ""
        bundle_source = HttpSource(source, token or os.environ.get(TOKEN_ENV, ""))
    else:
        bundle_source = PathSource(source)
    registry_dir, products = station_config.registry_dir, station_config.products
    if not watch:
        outcomes = sync_once(bundle_source, registry_dir, products)
        _print(outcomes)
        if any(outcome.status == "failed" for outcome in outcomes):
            raise typer.Exit(2)
        return
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    console.print(f"syncing {', '.join(products)} from {source} every {interval:g} s")
    sync_forever(
        bundle_source,
        registry_dir,
        products,
        interval_s=interval,
        stop=stop,
        on_outcomes=lambda outcomes: _print([o for o in outcomes if o.status != "current"]),
    )


PRODUCTS_OPTION = typer.Option(
    None, "--product", "-p", help="Product(s) to tune (default: the station config's products)."
)
IMAGES_OPTION = typer.Option(
    None, "--images", help="Folder of part images to time on (default: a synthetic part)."
)


@station_app.command("tune")
def tune(
    config: Path = CONFIG_OPTION,
    products: list[str] = PRODUCTS_OPTION,
    images: Path = IMAGES_OPTION,
    samples: int = typer.Option(40, "--samples", min=5, help="Batch-1 timings per bundle."),
) -> None:
    """Time every gated bundle (FP32/FP16/INT8) of each live model on this CPU; record the fastest.

    ``inspection serve`` serves the recorded choice (shown in /healthz, /metrics and the
    dashboard's Models page); a later promotion makes the record stale until tuned again.
    """
    from inspection.core.images import read_image
    from inspection.core.registry import Registry
    from inspection.runtime.hardware import cpu_info
    from inspection.runtime.inspector import expand_paths
    from inspection.runtime.tuning import tune_product, tuning_path
    from inspection.service.config import load_station_config

    station_config = load_station_config(config)
    registry = Registry(station_config.registry_dir)
    probe = [read_image(p) for p in expand_paths([images])][:16] if images else None
    if images and not probe:
        raise typer.BadParameter(f"no images in {images}", param_hint="--images")
    cpu = cpu_info()
    console.print(f"CPU: {cpu.summary()}; OpenVINO {cpu.openvino}: {', '.join(cpu.capabilities)}")
    for product in products or station_config.products:
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


def _print(outcomes) -> None:  # outcomes: list[SyncOutcome]
    colours = {"current": "dim", "updated": "green", "not_live": "yellow"}
    for outcome in outcomes:
        colour = colours.get(outcome.status, "red")
        console.print(
            f"[{colour}]{outcome.product}: {outcome.status}[/] live={outcome.live or '-'} "
            f"remote={outcome.remote or '-'} {outcome.detail}"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(station_app, name="station")
