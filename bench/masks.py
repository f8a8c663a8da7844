"""Masks you can measure with: the refiner each bundle keeps, and sizes, on held-out data.

    heavy .venv/bin/python bench/masks.py prepare [--products brick,grass,...] [--seed 0 --work ...]
    heavy .venv/bin/python bench/masks.py evaluate
    .venv/bin/python bench/masks.py report          # evaluation.md again from evaluation.json
    heavy .venv/bin/python bench/masks.py refiners  # the export's own choice, through an Inspector

``prepare``: per product, the demo data at the CLI defaults (``inspection data demo``), a
PatchCore version at the project's defaults and its FP32 bundle, then the bundle's raw outputs
on the version's validation and held-out test splits (the station's inference path,
``training.export.run_bundle``) and the test images at the map size, cached in
``var/bench-masks/<product>.npz``. ``evaluate`` (``_mask_strategies.py``): the bundle's segmentation
and the refiner kept on validation by the export's rule on top, judged on TEST at
the bundle's own verdicts, which cannot move, by ``core.metrics.mask_figures``. Reports go to
``reports/masks/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

import numpy as np
from _mask_strategies import DEMO, EVALUATION, evaluate, rewrite

os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORK = Path("var/bench-masks")
log = logging.getLogger("bench.masks")


def prepare(product: str, work: Path, seed: int = 0) -> Path:
    """Train, export and run ``product``; returns the cache file (kept if present)."""
    from inspection.core.bundle import read_bundle_metadata
    from inspection.core.images import read_image
    from inspection.core.product_config import load_model_config
    from inspection.core.registry import Registry
    from inspection.data.dataset import load_dataset
    from inspection.data.demo import demo_test_counts, write_demo_product
    from inspection.training.export import ExportOptions, run_bundle
    from inspection.training.registry_export import export_bundle, split_samples
    from inspection.training.train import train

    cache = work / f"{product}.npz"
    if cache.is_file():
        return cache
    data_root = work / "datasets"
    if not (data_root / product).is_dir():
        good, per_defect = demo_test_counts(product)
        write_demo_product(data_root, product, seed=seed, n_train=60, n_test_good=good,
                           n_test_per_defect=per_defect, size=256)  # fmt: skip
    dataset = load_dataset(data_root / product)
    registry = Registry(work / "registry")
    if product not in registry.bundles.products() or not registry.bundles.versions(product):
        train(load_model_config("patchcore", product=product), dataset, product=product,
              registry=registry, progress=False)  # fmt: skip
    record = registry.bundles.latest_version(product)
    bundles = [b for b in registry.bundles.bundle_ids(product) if b.endswith("fp32")]
    if not bundles:
        bundles = [export_bundle(registry, product, ExportOptions(precision="fp32")).bundle_id]
    bundle = registry.bundles.bundle_dir(product, bundles[-1])
    meta = read_bundle_metadata(bundle)
    arrays: dict[str, np.ndarray] = {}
    for split in ("validation", "test"):
        samples = split_samples(record, dataset, split)
        raw = run_bundle(bundle, samples)
        h, w = raw.maps.shape[1:]
        arrays |= {
            f"{split}_scores": raw.scores,
            f"{split}_maps": raw.maps,
            f"{split}_labels": raw.labels,
            f"{split}_masks": raw.masks,
            f"{split}_known": raw.mask_known,
            f"{split}_types": np.asarray(raw.defect_types),
            f"{split}_images": np.stack([_resized(read_image(s.path), (h, w)) for s in samples]),
        }
    arrays["normalization"] = np.asarray(dataclasses.astuple(meta.normalization))
    arrays["bundle"] = np.asarray(str(bundle))
    work.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, **arrays)
    return cache


def refiners(products: list[str], work: Path, out: Path) -> None:
    """Per bundle: the refiner ``choose_refiner`` keeps on validation (as the export does) and
    raw vs each refiner on the held-out test split (pooled pixel F1, mean image IoU, ms)."""
    from _report import cpu_description, load_average, save_report

    from inspection.core.registry import Registry
    from inspection.data.dataset import load_dataset
    from inspection.refine.evaluate import evaluate_refiners
    from inspection.refine.factory import build_refiner
    from inspection.refine.select import CANDIDATES, choose_refiner
    from inspection.runtime.inspector import Inspector
    from inspection.training.registry_export import split_samples

    registry = Registry(work / "registry")
    report: dict = {"cpu": cpu_description(), "load_before": load_average(), "products": {}}
    lines = [
        "# Refiners per bundle: kept only where they earn their place",
        "",
        "Chosen on each bundle's VALIDATION split by `refine.select.choose_refiner` (the export's "
        "rule: pooled pixel F1 gain >= 0.01 over the raw mask and mean image IoU not lower); "
        "held-out TEST figures below played no part. Defective images only; refiners run on NG "
        "results as on the line. Produced by `bench/masks.py refiners`.",
        "",
        "| product | kept | method | test pixel F1 | test mean image IoU | p50 ms per NG |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for product in products:
        record = registry.bundles.latest_version(product)
        dataset = load_dataset(work / "datasets" / product)
        bundle = registry.bundles.bundle_dir(
            product, [b for b in registry.bundles.bundle_ids(product) if b.endswith("fp32")][-1]
        )
        inspector = Inspector.from_bundle(bundle)
        choice, _ = choose_refiner(inspector, split_samples(record, dataset, "validation"))
        test = [s for s in split_samples(record, dataset, "test") if s.label == 1 and s.mask_path]
        methods = {name: build_refiner(None, name) for name in CANDIDATES}
        result = evaluate_refiners(inspector, test, methods, with_aupro=False)
        figures = {
            name: {
                "pixel_f1": entry["quality"]["defective_images"]["f1"],
                "mean_image_iou": entry["quality"]["mean_image_iou"],
                "p50_ms": entry.get("latency", {}).get("p50_ms"),
            }
            for name, entry in result["methods"].items()
        }
        report["products"][product] = {
            "choice": choice.describe(),
            "method": choice.method,
            "test": figures,
        }
        for name, f in figures.items():
            kept = (
                "**yes**"
                if name == choice.method or (name == "raw" and choice.method == "none")
                else ""
            )
            ms = "-" if f["p50_ms"] is None else f"{f['p50_ms']:.1f}"
            lines.append(
                f"| {product} | {kept} | {name} | {f['pixel_f1']:.3f} | {f['mean_image_iou']:.3f} | {ms} |"
            )
        log.info("%s: %s", product, choice.describe())
    report["load_after"] = load_average()
    lines += [
        "",
        f"CPU: {report['cpu']}; load {report['load_before']} -> {report['load_after']}.",
        "",
    ]
    lines += [f"- {p}: {e['choice']}" for p, e in report["products"].items()]
    save_report(out, "refiners", report, "\n".join(lines) + "\n")


def _resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    if image.shape[:2] == size:
        return image
    return cv2.resize(image, size[::-1], interpolation=cv2.INTER_AREA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=["prepare", "evaluate", "report", "refiners"])
    parser.add_argument("--products", default=",".join(DEMO + EVALUATION))
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--out", type=Path, default=Path("reports/masks"))
    parser.add_argument("--seed", type=int, default=0, help="prepare: the demo data's seed")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    products = [p for p in args.products.split(",") if p]
    if args.phase == "refiners":
        return refiners(products, args.work, args.out)
    if args.phase == "prepare":
        for product in products:
            log.info("%s -> %s", product, prepare(product, args.work, args.seed))
        return
    phases = {"evaluate": evaluate, "report": rewrite}
    phases[args.phase](products, args.work, args.out)


if __name__ == "__main__":
    sys.exit(main())
