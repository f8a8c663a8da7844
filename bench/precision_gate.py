"""INT8 vs FP32 at each bundle's own thresholds, for every demo product and model.

    python bench/precision_gate.py --prepare [--site S]   # train/export what is missing (heavy)
    python bench/precision_gate.py [--site S]             # measure and write the report (bench)

For each product and model kind: the latest registered version, its FP32 and INT8 bundles
(INT8 exported with ``force`` so a refused bundle is still measured; whether the gate passed is
recorded) and, for ``--whole-graph`` products, an INT8 bundle whose distance head is quantised
too (the state before the NNCF ignored scope). Figures:

- from each bundle's export gate, on the version's held-out test split at its own calibration:
  false-reject and miss rates, image/pixel AUROC, AUPRO, pixel F1 and region recall;
- ``inspection inspect <bundle> datasets/<product>/test`` (the station CLI, every test image):
  good parts rejected, defects missed, NG verdicts without a region;
- throughput (images/s, THROUGHPUT hint, async queue) and p50 latency at batch 1.

Writes ``reports/verdicts/int8_vs_fp32.json`` and ``.md``. Figures depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _report import save_report

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PRODUCTS = ("brick", "grass", "gravel")
KINDS = ("patchcore", "stfpm")
FIGURES = (
    "false_reject_rate",
    "miss_rate",
    "image_auroc",
    "pixel_auroc",
    "aupro",
    "pixel_f1",
    "region_recall",
)
WHOLE_GRAPH = "int8-whole-graph"


def latest(registry: Any, product: str, kind: str) -> Any | None:
    records = [r for r in registry.versions(product) if r.model_kind == kind]
    return records[-1] if records else None


def prepare(site: Any, products: list[str], kinds: list[str], whole_graph: list[str]) -> None:
    """Train the missing versions and export FP32 / INT8 (forced) / whole-graph INT8 bundles."""
    from inspection.core.registry import Registry
    from inspection.data.dataset import load_dataset
    from inspection.training.config import load_model_config
    from inspection.training.export import ExportOptions
    from inspection.training.registry_export import RegistryExport, export_bundle
    from inspection.training.train import train

    registry = Registry(site.registry_dir)
    for product in products:
        for kind in kinds:
            record = latest(registry, product, kind)
            if record is None:
                print(f"training {product} {kind}", flush=True)
                config = load_model_config(kind, product=product)
                dataset = load_dataset(site.datasets_dir / product)
                record = train(config, dataset, product=product, registry=registry, progress=False)
            for precision in ("fp32", "int8"):
                if f"{record.version}-{precision}" not in registry.bundle_ids(product):
                    print(f"exporting {product} {record.version} {precision}", flush=True)
                    export_bundle(
                        registry,
                        product,
                        ExportOptions(precision=precision, force=True),
                        RegistryExport(version=record.version),
                    )
            target = _whole_graph_dir(site, product, record)
            if product in whole_graph and not target.exists():
                print(f"exporting {product} {record.version} INT8, whole graph", flush=True)
                _export_whole_graph(registry, record, site, target)


def _whole_graph_dir(site: Any, product: str, record: Any) -> Path:
    return (
        Path(site.registry_dir).parent
        / "bench-bundles"
        / product
        / f"{record.version}-{WHOLE_GRAPH}"
    )


def _export_whole_graph(registry: Any, record: Any, site: Any, target: Path) -> None:
    """INT8 with the distance head quantised too (no ignored scope), outside the registry."""
    import shutil
    from dataclasses import replace

    from inspection.core.signing import sign_bundle, site_signing_key
    from inspection.data.dataset import load_dataset
    from inspection.training.export import ExportOptions, export_model
    from inspection.training.registry_export import base_metadata, export_splits
    from inspection.training.train import load_trained_model

    dataset = load_dataset(site.datasets_dir / record.product)
    splits = export_splits(record, dataset)
    base = replace(base_metadata(record, "int8"), bundle_id=f"{record.version}-{WHOLE_GRAPH}")
    options = ExportOptions(precision="int8", force=True, keep_head_fp32=False)
    with tempfile.TemporaryDirectory() as scratch:
        result = export_model(
            load_trained_model(record).model,
            Path(scratch) / "bundle",
            base=base,
            splits=splits,
            options=options,
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(result.bundle_dir, target)
    key = site_signing_key(registry.root)
    if key is not None:  # signed like the site's own bundles: `inspection inspect` checks it
        sign_bundle(target, key)


# ---------------------------------------------------------------------- measuring
def inspect_cli(bundle: Path, test_dir: Path) -> dict[str, int]:
    """``inspection inspect`` on every test image: rejected good, missed, NG without region."""
    with tempfile.TemporaryDirectory() as out:
        done = subprocess.run(
            [sys.executable, "-m", "inspection", "inspect", str(bundle), str(test_dir),
             "--out", out, "--format", "json"],
            capture_output=True, text=True, cwd=ROOT,
        )  # fmt: skip
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip().splitlines()[-1:]
            raise RuntimeError(f"inspection inspect {bundle} exited {done.returncode}: {said}")
        rows = json.loads((Path(out) / "results.json").read_text())
    judged = [r for r in rows if not r["error"]]
    good = [r for r in judged if Path(r["path"]).parent.name == "good"]
    bad = [r for r in judged if Path(r["path"]).parent.name != "good"]
    return {
        "images": len(rows),
        "errors": len(rows) - len(judged),
        "good": len(good),
        "good_rejected": sum(r["verdict"] == "NG" for r in good),
        "defective": len(bad),
        "defects_missed": sum(r["verdict"] == "OK" for r in bad),
        "ng": sum(r["verdict"] == "NG" for r in judged),
        "ng_without_region": sum(r["verdict"] == "NG" and not r["regions"] for r in judged),
    }


def speed(bundle: Path, test_dir: Path, count: int = 32) -> dict[str, float]:
    """Throughput (async queue, THROUGHPUT hint) and p50 latency at batch 1 (LATENCY hint)."""
    from inspection.core.images import read_image
    from inspection.runtime.inspector import Inspector
    from inspection.runtime.paths import expand_paths

    images = [read_image(p) for p in expand_paths([test_dir])[:count]]
    fast = Inspector.from_bundle(bundle, performance_hint="THROUGHPUT")
    fast.inspect_many(images[:4])
    start = time.perf_counter()
    fast.inspect_many(images)
    throughput = len(images) / (time.perf_counter() - start)
    single = Inspector.from_bundle(bundle)
    single.inspect(images[0])
    latencies = []
    for image in images:
        start = time.perf_counter()
        single.inspect(image)
        latencies.append((time.perf_counter() - start) * 1e3)
    return {
        "throughput_ips": round(throughput, 1),
        "latency_p50_ms": round(float(np.median(latencies)), 2),
    }


def measure_bundle(bundle: Path, test_dir: Path) -> dict[str, Any]:
    from inspection.core.bundle import verify_bundle

    meta = verify_bundle(bundle)
    gate = meta.export_record().gate
    if gate is None:
        raise SystemExit(f"{bundle}: no export gate recorded; re-export it")
    return {
        "bundle": meta.bundle_id,
        "precision": meta.precision,
        "gate_passed": gate.passed,
        "gate_failures": list(gate.failures),
        "held_out": {
            k: _round(getattr(gate.figures, k))
            for k in (*FIGURES, "ng_without_region", "n_good", "n_defective")
        },
        "segmentation": meta.segmentation_rule.describe(),
        "inspect_cli": inspect_cli(bundle, test_dir),
        **speed(bundle, test_dir),
    }


def _round(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


def run(site: Any, products: list[str], kinds: list[str], whole_graph: list[str]) -> dict[str, Any]:
    from inspection.core.registry import Registry

    load = os.getloadavg()[0]
    registry = Registry(site.registry_dir)
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    for product in products:
        test_dir = site.datasets_dir / product / "test"
        for kind in kinds:
            record = latest(registry, product, kind)
            names = [f"{record.version}-{p}" for p in ("fp32", "int8")] if record else []
            if record is None or not set(names) <= set(registry.bundle_ids(product)):
                print(f"skipping {product} {kind}: not prepared (run with --prepare)", flush=True)
                skipped.append(f"{product} {kind}")
                continue
            bundles = [
                registry.bundle_dir(product, f"{record.version}-{p}") for p in ("fp32", "int8")
            ]
            if product in whole_graph and _whole_graph_dir(site, product, record).exists():
                bundles.append(_whole_graph_dir(site, product, record))
            for bundle in bundles:
                print(f"measuring {product} {kind} {bundle.name}", flush=True)
                rows.append({"product": product, "model": kind, **measure_bundle(bundle, test_dir)})
    return {"rows": rows, "skipped": skipped, "load_before": load}


def write_markdown(result: dict[str, Any], target: Path) -> None:
    lines = [
        "# INT8 vs FP32 at each bundle's own thresholds",
        "",
        f"Load average at start: {result['load_before']:.2f} (2 cores). Held-out figures: the "
        "version's held-out test split, each bundle calibrated on its own validation outputs. "
        "`inspect` columns: `inspection inspect <bundle> datasets/<product>/test` on the station "
        f"runtime (all test images). `{WHOLE_GRAPH}`: INT8 with the distance head quantised "
        "too (before the NNCF ignored scope), for comparison; never registered.",
        "",
        "| product | model | bundle | gate | FRR | miss | img AUROC | px AUROC | AUPRO | px F1 "
        "| region recall | inspect: good rejected | missed | NG w/o region | img/s | p50 ms |",
        "|---|---|---|---|" + "---|" * 12,
    ]
    for r in result["rows"]:
        h, c = r["held_out"], r["inspect_cli"]
        lines.append(
            f"| {r['product']} | {r['model']} | {r['bundle']} | "
            f"{'pass' if r['gate_passed'] else 'REFUSED'} | "
            + " | ".join(_cell(h[k]) for k in FIGURES)
            + f" | {c['good_rejected']}/{c['good']} | {c['defects_missed']}/{c['defective']} | "
            f"{c['ng_without_region']} | {r['throughput_ips']} | {r['latency_p50_ms']} |"
        )
    if result["skipped"]:
        lines += [
            "",
            f"Not measured (not trained/exported in time): {', '.join(result['skipped'])}.",
        ]
    refused = [r for r in result["rows"] if not r["gate_passed"]]
    if refused:
        lines += ["", "Gate refusals (figures that failed):", ""]
        lines += [
            f"- {r['product']} {r['model']} {r['bundle']}: {'; '.join(r['gate_failures'])}"
            for r in refused
        ]
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _cell(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


def main() -> None:
    from inspection.core.config import load_site_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", default=None)
    parser.add_argument("--products", nargs="+", default=list(PRODUCTS))
    parser.add_argument("--models", nargs="+", default=list(KINDS))
    parser.add_argument("--whole-graph", nargs="*", default=["brick"])
    parser.add_argument("--prepare", action="store_true", help="train/export only")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "verdicts")
    args = parser.parse_args()
    site = load_site_config(args.site)
    if args.prepare:
        prepare(site, args.products, args.models, args.whole_graph)
        return
    result = run(site, args.products, args.models, args.whole_graph)
    save_report(args.out, "int8_vs_fp32", result)
    write_markdown(result, args.out / "int8_vs_fp32.md")
    print((args.out / "int8_vs_fp32.md").read_text())


if __name__ == "__main__":
    main()
