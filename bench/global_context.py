"""Global-context score on the demo products: image AUROC with and without it, and its latency.

    python bench/global_context.py [--data datasets] [--out reports/global] [--products weave,...]

Per product: the default PatchCore config trained once with the global candidates
(``global_context: [features, colour, frequency]``; training keeps those that help on the
validation split) into a throw-away registry and exported to INT8. The held-out test split
runs through the station ``Inspector``; each result carries the per-component z-scores, so the
local-only score (today's PatchCore: ``local``, a monotone function of its raw score) and the
fused score come from the same model and the same run (no kept component: both are the local
score). Image AUROC with a stratified bootstrap 95 % interval (2000 resamples).
Latency: p50 of ``Inspector.inspect`` and of the global step alone (pooled-feature read-out is
part of the graph; the step is the kept components' statistics, Mahalanobis and fusion).
Results are merged into ``<out>/results.json`` (one entry per product) and ``summary.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from _report import previous_report, save_report

from inspection.core.bootstrap import auroc_interval
from inspection.core.export_gate import ExportRecord
from inspection.core.images import read_image
from inspection.core.product_config import load_model_config
from inspection.core.registry import Registry
from inspection.data.dataset import load_dataset
from inspection.runtime.inspector import Inspector
from inspection.runtime.preprocess import preprocess
from inspection.training.export import ExportOptions
from inspection.training.registry_export import export_bundle, held_out_test_samples
from inspection.training.train import train_model

COMPONENTS = "[features,colour,frequency]"
LATENCY_RUNS = 40


def run_product(product: str, data: Path, precision: str) -> dict:
    dataset = load_dataset(data / product)
    config = load_model_config(
        "patchcore", product=product, overrides=[f"global_context={COMPONENTS}"]
    )
    with tempfile.TemporaryDirectory(prefix="bench-global-") as registry_dir:
        registry = Registry(registry_dir)
        started = time.perf_counter()
        outcome = train_model(config, dataset, product=product, registry=registry, progress=False)
        fit_s = time.perf_counter() - started
        search = outcome.record.global_context_search()
        bundle = export_bundle(registry, product, ExportOptions(precision=precision, force=True))
        inspector = Inspector.from_bundle(bundle.bundle_dir)
        samples = held_out_test_samples(outcome.record, dataset)
        images = [read_image(s.path) for s in samples]
        labels = np.asarray([s.label for s in samples])
        results = [inspector.inspect(image) for image in images]
        row = {
            "product": product,
            "precision": precision,
            "test_images": len(samples),
            "test_good": int((labels == 0).sum()),
            "fit_and_fuse_s": round(fit_s, 1),
            "kept": list(search.components),
            "validation_auroc": search.validation_auroc,
            "bundle_gate": bundle.gate.passed,
            "reference_fp32_image_auroc": _image_auroc(bundle.metadata.export_record()),
        }
        row["auroc"] = _aurocs(results, labels, [s.defect_type for s in samples])
        row["drivers_on_defects"] = _drivers(results, labels)
        row["latency_ms"] = _latency(inspector, images)
    return row


def _image_auroc(record: ExportRecord) -> float | None:
    reference = record.reference_fp32
    return reference.image_auroc if reference is not None else None


def _aurocs(results: list, labels: np.ndarray, defect_types: list[str]) -> dict:
    """AUROC with CI per kept component and fused; per defect type for local and fused."""
    names = list(results[0].components)
    table = {name: np.asarray([r.components[name] for r in results]) for name in names}
    table["fused"] = np.asarray([r.score for r in results])
    table.setdefault("local", table["fused"])  # no kept component: the score is the local one
    out = {name: auroc_interval(values, labels).to_dict() for name, values in table.items()}
    types = np.asarray(defect_types)
    per_type = {}
    for defect in sorted(set(defect_types) - {"good"}):
        keep = (types == defect) | (labels == 0)
        per_type[defect] = {
            name: round(auroc_interval(table[name][keep], labels[keep], resamples=200).value, 4)
            for name in ("local", "fused")
        }
    out["per_defect_type"] = per_type
    return out


def _drivers(results: list, labels: np.ndarray) -> dict[str, int]:
    counts: dict[str, int] = {}
    for result, label in zip(results, labels, strict=True):
        if label:
            counts[result.driver] = counts.get(result.driver, 0) + 1
    return counts


def _latency(inspector: Inspector, images: list[np.ndarray]) -> dict[str, float]:
    """p50 of a full ``inspect`` and of the global step alone (same images, warm)."""
    image = images[0]
    if inspector.model.context is None:
        return {"inspect_p50": _p50(inspector, images), "global_step_p50": 0.0}
    for _ in range(3):
        inspector.inspect(image)
    total, step = [], []
    prep = inspector.metadata.preprocessing
    for index in range(LATENCY_RUNS):
        image = images[index % len(images)]
        started = time.perf_counter()
        inspector.inspect(image)
        total.append((time.perf_counter() - started) * 1e3)
        batch = preprocess(image, prep)[None]
        outputs = inspector.model.run(batch)  # the graph alone; the fusion step is timed
        started = time.perf_counter()
        inspector.model.fuse(batch, outputs)
        step.append((time.perf_counter() - started) * 1e3)
    return {
        "inspect_p50": round(float(np.median(total)), 2),
        "global_step_p50": round(float(np.median(step)), 2),
        "runs": LATENCY_RUNS,
    }


def _p50(inspector: Inspector, images: list[np.ndarray]) -> float:
    for _ in range(3):
        inspector.inspect(images[0])
    times = []
    for index in range(LATENCY_RUNS):
        started = time.perf_counter()
        inspector.inspect(images[index % len(images)])
        times.append((time.perf_counter() - started) * 1e3)
    return round(float(np.median(times)), 2)


def write_summary(out: Path, rows: dict[str, dict]) -> None:
    lines = [
        "# Global-context score on the demo products",
        "",
        "Default PatchCore config per product, trained once with the global candidates",
        "(`global_context: [features, colour, frequency]`), INT8 bundle, held-out test split run",
        "through the station `Inspector`. `local` = today's PatchCore score of the same model;",
        "`fused` = max of z-scores over local and the components kept on the validation split",
        "(greedy forward selection, a component must add >= 0.01 validation AUROC; global",
        "components standardised on out-of-fold train distances). `kept` = the chosen ones.",
        "Image AUROC with stratified bootstrap 95 % intervals. Produced by",
        "`/work/bin/bench python bench/global_context.py`.",
        "",
        "| product | test (good) | kept | validation local -> fused | local AUROC | fused AUROC |"
        " FP32 bundle AUROC | gate | inspect p50 ms | global step p50 ms | load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for product, row in rows.items():
        auroc = row["auroc"]

        def cell(name: str, auroc: dict = auroc) -> str:
            a = auroc[name]
            return f"{a['value']:.3f} [{a['low']:.3f}, {a['high']:.3f}]"

        val = row["validation_auroc"]
        lines.append(
            f"| {product} | {row['test_images']} ({row['test_good']}) | "
            f"{', '.join(row['kept']) or 'none'} | {val['local']:.3f} -> {val['fused']:.3f} | "
            f"{cell('local')} | {cell('fused')} | {_three(row.get('reference_fp32_image_auroc'))} | "
            f"{'passed' if row['bundle_gate'] else 'refused'} | {row['latency_ms']['inspect_p50']} | "
            f"{row['latency_ms']['global_step_p50']} | {row['load_before']} |"
        )
    lines += ["", "## Per defect type (image AUROC, local -> fused)", ""]
    for product, row in rows.items():
        parts = [
            f"{defect} {v['local']:.3f} -> {v['fused']:.3f}"
            for defect, v in row["auroc"]["per_defect_type"].items()
        ]
        lines.append(
            f"- **{product}**: "
            + "; ".join(parts)
            + f"; drivers on defects: {row['drivers_on_defects']}"
        )
    (out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("datasets"))
    parser.add_argument("--out", type=Path, default=Path("reports/global"))
    parser.add_argument("--products", default="weave,brick,grass,gravel")
    parser.add_argument("--precision", default="int8", choices=("fp32", "fp16", "int8"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows = previous_report(args.out, "results")
    for product in args.products.split(","):
        load = round(os.getloadavg()[0], 2)
        row = run_product(product, args.data, args.precision)
        row["load_before"] = load
        row["load_after"] = round(os.getloadavg()[0], 2)
        rows[product] = row
        save_report(args.out, "results", rows)
        write_summary(args.out, rows)
        print(json.dumps({k: row[k] for k in ("product", "latency_ms")}), row["auroc"]["fused"])


if __name__ == "__main__":
    main()


def _three(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
