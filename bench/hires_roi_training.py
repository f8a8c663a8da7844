"""The ROI applied to training on the high-resolution plate: patches, fit time, figures.

    python bench/hires_roi_training.py [--data datasets/plate] [--out reports/hires]
                                       [--tiled] [--tiled-baseline]

Trains the product's PatchCore on ``datasets/plate`` without and with the product's ROI in
training (``training.roi``: patches whose receptive-field centre lies outside the ROI never
enter the memory bank; tiles without an ROI pixel are skipped), each exported as an FP32 bundle
with the product's part setup (ROI on the outputs, alignment, units) and measured on the
held-out test split at its own thresholds. Variants: the 256 px whole-image model (both);
``--tiled``: the tiled model with the ROI; ``--tiled-baseline``: also without (its fit took
789 s in ``reports/hires/hires.md``). Writes ``roi_training.json`` and ``roi_training.md``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from _report import load_average, save_report

from inspection.core.registry import Registry
from inspection.data.dataset import load_dataset
from inspection.training.config import load_model_config, load_product_config
from inspection.training.export import ExportOptions
from inspection.training.registry_export import RegistryExport, export_bundle
from inspection.training.roi import centres
from inspection.training.tiled import TileDataset, train_tiled
from inspection.training.train import train

FIGURES = ("image_auroc", "pixel_auroc", "aupro", "false_reject_rate", "miss_rate")


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def variant(
    name: str, registry: Registry, data: Path, *, tiled: bool, with_roi: bool
) -> dict[str, Any]:
    """Train, export and measure one variant."""
    dataset = load_dataset(data)
    product = load_product_config(dataset.name)
    config = load_model_config("patchcore", product=dataset.name)
    roi = product.roi if with_roi else None
    started = time.perf_counter()
    if tiled:
        record = train_tiled(
            config, product.tiling, dataset, product=dataset.name, registry=registry,
            progress=False, evaluate=False, roi=roi,
        )  # fmt: skip
    else:
        record = train(
            config, dataset, product=dataset.name, registry=registry, progress=False, roi=roi
        )
    train_seconds = time.perf_counter() - started
    _say(f"{name}: trained in {train_seconds:.0f} s")
    bundle = export_bundle(
        registry, dataset.name, ExportOptions(precision="fp32", force=True),
        RegistryExport(version=record.version, dataset_path=data),
    )  # fmt: skip
    trained = record.training_roi()
    figures = bundle.metadata.evaluation().to_mapping()["overall"]
    return {
        "variant": name,
        "fit_seconds": record.metrics.get("fit_seconds"),
        "train_seconds": round(train_seconds, 1),
        "train_tiles": record.extra.get("train_tiles"),
        "training_roi": None if trained is None else trained.describe(),
        "patches_kept": None if trained is None else trained.patches_kept,
        "patches_total": None if trained is None else trained.patches_total,
        "tiles_total": None if trained is None else trained.tiles_total,
        "figures": {k: figures.get(k) for k in FIGURES},
    }


def tile_counts(data: Path, cells: int = 32) -> dict[str, Any]:
    """Training tiles and PatchCore patches of the tiled model without / with the ROI (no fit:
    the tile grid and each kept tile's ROI mask at its ``cells`` x ``cells`` feature map)."""
    dataset = load_dataset(data)
    product = load_product_config(dataset.name)
    kept = TileDataset(dataset.train_samples, product.tiling, product.roi)
    masks = kept.training_roi.masks.values() if kept.training_roi else []
    return {
        "tiles_total": kept.total_tiles,
        "tiles_kept": len(kept),
        "patches_total": kept.total_tiles * cells * cells,
        "patches_kept": int(sum(centres(m, cells, cells).sum() for m in masks)),
    }


def markdown(
    rows: list[dict[str, Any]], tiles: dict[str, Any], load: str, load_end: list[float]
) -> str:
    def fmt(value: Any) -> str:
        return (
            "n/a" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))
        )

    lines = [
        "# The ROI in training on the 2048 px plate",
        "",
        "Written by `python bench/hires_roi_training.py`; PatchCore per the product config, "
        "FP32 bundles with the product's ROI on the outputs, held-out test split, each at its "
        f"own thresholds. Load before {load}, after {load_end}.",
        "",
        "| variant | training ROI | patches into the coreset | fit s | image AUROC | "
        "pixel AUROC | AUPRO | FRR | miss |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        f = row["figures"]
        patches = (
            "all" if row["patches_kept"] is None
            else f"{row['patches_kept']} of {row['patches_total']} collected"
        )  # fmt: skip
        lines.append(
            f"| {row['variant']} | {row['training_roi'] or 'none'} | {patches} | "
            f"{row['fit_seconds']} | {fmt(f['image_auroc'])} | {fmt(f['pixel_auroc'])} | "
            f"{fmt(f['aupro'])} | {fmt(f['false_reject_rate'])} | {fmt(f['miss_rate'])} |"
        )
    lines += [
        "",
        f"Tiled model (no fit needed to count): {tiles['tiles_kept']} of {tiles['tiles_total']} "
        f"training tiles hold an ROI pixel; {tiles['patches_kept']} of {tiles['patches_total']} "
        "patches (32 x 32 per 256 px tile) have their centre inside the ROI and can enter the "
        "coreset.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("datasets/plate"))
    parser.add_argument("--out", type=Path, default=Path("reports/hires"))
    parser.add_argument("--tiled", action="store_true")
    parser.add_argument("--tiled-baseline", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load = load_average()
    plan = [("256 px, no training ROI", False, False), ("256 px, training ROI", False, True)]
    if args.tiled_baseline:
        plan.append(("tiled, no training ROI", True, False))
    if args.tiled or args.tiled_baseline:
        plan.append(("tiled, training ROI", True, True))
    tiles = tile_counts(args.data)
    rows = []
    for name, tiled, with_roi in plan:
        registry = Registry(Path(tempfile.mkdtemp(prefix="bench-roi-training-")))
        rows.append(variant(name, registry, args.data, tiled=tiled, with_roi=with_roi))
    load_end = [round(x, 2) for x in os.getloadavg()]
    report = {"rows": rows, "tiled_counts": tiles, "load_start": load, "load_end": load_end}
    text = markdown(rows, tiles, load, load_end)
    save_report(args.out, "roi_training", report, text)
    print(text)


if __name__ == "__main__":
    main()
