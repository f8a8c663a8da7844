"""Train PatchCore and STFPM on the demo products and record accuracy and fit time.

    python bench/train_demo.py [--data datasets] [--out reports/training] [--products brick,...]

For each product: PatchCore (ImageNet weights), STFPM (ImageNet teacher) and PatchCore with the
same config but a randomly initialised backbone (``backbone.weights=random``). Models go to a
throw-away registry; results to ``<out>/results.json`` and ``<out>/summary.md``.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

from _report import save_report

from inspection.core.config import to_mapping
from inspection.core.product_config import load_model_config
from inspection.core.registry import Registry
from inspection.data.dataset import load_dataset
from inspection.training.train import package_versions, train_model

RUNS = (
    ("patchcore", "patchcore", ()),
    ("stfpm", "stfpm", ()),
    ("patchcore-random", "patchcore", ("backbone.weights=random",)),
)
METRICS = ("image_auroc", "pixel_auroc", "aupro", "image_f1", "pixel_f1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("datasets"))
    parser.add_argument("--out", type=Path, default=Path("reports/training"))
    parser.add_argument("--products", default="brick,grass,gravel")
    parser.add_argument("--runs", default=",".join(name for name, _, _ in RUNS))
    parser.add_argument("--set", action="append", default=[], help="extra config override")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-registry-") as registry_dir:
        registry = Registry(registry_dir)
        for product in args.products.split(","):
            dataset = load_dataset(args.data / product)
            for name, kind, overrides in [r for r in RUNS if r[0] in args.runs.split(",")]:
                config = load_model_config(kind, product=product, overrides=[*overrides, *args.set])
                load_before = os.getloadavg()[0]
                started, cpu_started = time.perf_counter(), time.process_time()
                outcome = train_model(
                    config, dataset, product=product, registry=registry, progress=False
                )
                total = time.perf_counter() - started
                cpu = time.process_time() - cpu_started
                fit, metrics = outcome.record.fit_figures(), outcome.metrics
                row = {
                    "product": product,
                    "run": name,
                    "model": kind,
                    "weights": outcome.record.backbone_weights().source,
                    **{key: getattr(metrics.overall, key) for key in METRICS},
                    "fit_seconds": fit.fit_seconds,
                    "total_seconds": round(total, 1),
                    "cpu_seconds": round(cpu, 1),  # all threads; less sensitive to contention
                    "load_average_1min": round(load_before, 1),
                    "test_images": fit.test_images,
                    "per_defect": {k: to_mapping(v) for k, v in metrics.per_defect.items()},
                    "config": outcome.record.config,
                }
                rows.append(row)
                print(_line(row), flush=True)
                write(args.out, rows)  # after every run, so a partial bench still reports


def write(out: Path, rows: list[dict]) -> None:
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "note": "shared 2-core machine; load_average_1min shows contention per run",
        },
        "packages": package_versions(),
        "runs": rows,
    }
    save_report(out, "results", result, default=str)
    lines = [
        "# Training on the demo products",
        "",
        "Held-out test split (70 % of each test defect type and of the good test images; the",
        "other 30 % set the thresholds). Produced by `python bench/train_demo.py`.",
        "",
        "| product | run | weights | image AUROC | pixel AUROC | AUPRO | image F1 | fit s | load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['product']} | {row['run']} | {row['weights']} | "
            + " | ".join(
                _fmt(row[key]) for key in ("image_auroc", "pixel_auroc", "aupro", "image_f1")
            )
            + f" | {row['fit_seconds']:.0f} | {row['load_average_1min']} |"
        )
    (out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


def _line(row: dict) -> str:
    metrics = " ".join(f"{key}={_fmt(row[key])}" for key in METRICS)
    return f"{row['product']:8s} {row['run']:18s} {metrics} fit={row['fit_seconds']:.1f}s"


if __name__ == "__main__":
    main()
