"""``inspection refine``: export SAM refiner bundles and measure refiners against ground truth."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from tqdm import tqdm

from inspection.cli._site import group, site_option
from inspection.cli.console import screen
from inspection.core.config import load_site_config
from inspection.core.signing import key_id, sign_bundle, site_keys_dir, site_signing_key
from inspection.data.dataset import load_dataset
from inspection.refine.config import load_refine_config
from inspection.refine.evaluate import evaluate_refiners
from inspection.refine.factory import build_refiner
from inspection.refine.report import write_report

refine_app = group("refine", "Defect-mask refinement (SAM, GrabCut).")
console = screen()
ConfigOption = Annotated[Path | None, typer.Option("--config", help="Refine config YAML.")]


@refine_app.command("export-sam")
def export_sam(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the refiner bundle.")],
    backend: Annotated[str, typer.Option(help="vit_t (MobileSAM) or vit_b (SAM ViT-B).")] = "vit_t",
    checkpoint: Annotated[
        Path | None,
        typer.Option("--checkpoint", help="SAM weights file (default: refine.sam.checkpoint)."),
    ] = None,
    random_init: Annotated[
        bool,
        typer.Option("--random-init", help="Random weights: tests and latency measurements only."),
    ] = False,
    precision: Annotated[
        str | None, typer.Option(help="fp32, fp16 or int8 (default: refine.sam.precision).")
    ] = None,
    config: ConfigOption = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing bundle folder.")] = False,
    site: str | None = site_option("Site config YAML, its signing key beside its registry"),
) -> None:
    """Export SAM's image encoder and mask decoder to an OpenVINO refiner bundle (needs torch),
    signed with the site key when this machine holds it (stations pinning a key refuse an
    unsigned or altered one)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    registry_dir = load_site_config(site).registry_dir
    # deferred: torch (the training side)
    from inspection.training.sam_export import export_sam_bundle

    sam = load_refine_config(config).sam
    weights = checkpoint or (None if random_init else sam.checkpoint)
    with console.status(f"exporting SAM {backend} to OpenVINO…"):
        bundle = export_sam_bundle(
            out,
            backend=backend,
            checkpoint=weights,
            random_init=random_init,
            precision=precision or sam.precision,
            overwrite=overwrite,
        )
    if random_init:
        console.print("[bold yellow]warning:[/] RANDOM weights: use this bundle for latency only")
    key = site_signing_key(registry_dir)
    if key is None:
        console.print(
            f"[bold yellow]not signed:[/] no site key in {site_keys_dir(registry_dir)}; stations "
            "pinning a key refuse it until 'inspection bundle sign' signs it"
        )
    else:
        console.print(
            f"signed with key {key_id(key.public_key())}: digest {sign_bundle(bundle, key)}"
        )
    console.print(f"wrote {bundle}")


@refine_app.command("evaluate")
def evaluate(
    bundle: Annotated[Path, typer.Option("--bundle", help="Anomaly model bundle (OpenVINO).")],
    dataset: Annotated[Path, typer.Option("--dataset", help="MVTec-style product folder.")],
    methods: Annotated[
        str, typer.Option(help="Comma-separated refiners.")
    ] = "grabcut,random_walker",
    sam_bundle: Annotated[
        Path | None, typer.Option("--sam-bundle", help="SAM refiner bundle to include.")
    ] = None,
    config: ConfigOption = None,
    out: Annotated[Path, typer.Option("--out", help="Report folder.")] = Path("reports/refine"),
    limit: Annotated[int, typer.Option(help="Use at most this many test images (0 = all).")] = 0,
) -> None:
    """Pixel F1 / IoU / AUPRO of the raw mask vs each refiner, and their added latency."""
    # deferred: OpenVINO, not needed for --help
    from inspection.runtime.predictor import load_inspector

    refine_config = load_refine_config(config)
    names = [m.strip() for m in methods.split(",") if m.strip()]
    refiners = {name: build_refiner(refine_config, name) for name in names}
    latency_only: list[str] = []
    if sam_bundle is not None:
        # deferred: OpenVINO, only with --sam-bundle
        from inspection.refine.sam import SamRefiner

        sam = SamRefiner.from_bundle(sam_bundle, config=refine_config)
        refiners[sam.name] = sam
        if sam.metadata.random_weights:
            latency_only.append(sam.name)
    samples = list(load_dataset(dataset).test_samples)
    samples = samples[:limit] if limit > 0 else samples
    inspector = load_inspector(bundle)  # a TiledInspector for a tiled bundle
    with tqdm(total=len(samples), desc="refine evaluate", unit="img") as bar:
        results = evaluate_refiners(
            inspector, samples, refiners, latency_only=latency_only, on_image=bar.update,
            bits=inspector.metadata.preprocessing.source_bits,
            value_range=inspector.metadata.preprocessing.source_range,
        )  # fmt: skip
    report = {
        "setup": {"bundle": str(bundle), "dataset": str(dataset), "methods": list(refiners)},
        "products": {dataset.name: results},
    }
    summary = write_report(out, report)
    console.print(summary.read_text())
