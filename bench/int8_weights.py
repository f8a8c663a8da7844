"""INT8 with 7-bit weights in every layer vs NNCF's default (8 bits past the first layer).

    python bench/int8_weights.py [--products brick,grass,gravel,weave,tissue,part]
                                 [--out reports/int8_weights] [train|export|latency|report]

CPUs without VNNI (AVX2, AVX-512 without VNNI) multiply u8 activations by s8 weights in pairs
summed into int16 (``vpmaddubsw``), which saturates with 8-bit weights: the bundle then computes
something other than what its calibration and gate measured on a VNNI or AMX machine. NNCF's
overflow fix uses 7-bit weights, which cannot saturate. Phases:

- ``train``: the default PatchCore of each product into the bench's own registry;
- ``export``: an FP32 bundle and an INT8 bundle each way (forced, so a refused one is measured
  too), each calibrated on its own outputs; the export gate's verdict and the held-out figures
  at each bundle's own operating point;
- ``latency``: ``Inspector.inspect`` p50 of every INT8 pair, rounds interleaved;
- ``report``: ``summary.md``.

brick, grass and gravel are the demo products; weave, tissue and part the evaluation family.
The default was set from the ISA argument above, before any of these figures. Not a test.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _product_ab import dataset_root, family, operating_figures, quiet_logs  # noqa: E402
from _report import (  # noqa: E402
    cpu_description,
    interleaved_rounds,
    load_average,
    percent,
    previous_report,
    save_report,
)

log = logging.getLogger("bench.int8_weights")
VARIANTS: dict[str, dict[str, Any]] = {
    "fp32": {"precision": "fp32"},
    "int8-7bit": {"precision": "int8", "int8_seven_bit_weights": True},
    "int8-8bit": {"precision": "int8", "int8_seven_bit_weights": False},
}
"""Bundle name -> ``ExportOptions`` of the bundle (each exported forced: refused ones too)."""


def train(args: argparse.Namespace) -> None:
    from inspection.core.registry import Registry
    from inspection.data.dataset import load_dataset
    from inspection.training.config import load_model_config
    from inspection.training.train import train_model

    registry = Registry(args.registry)
    for product in args.products.split(","):
        if product in registry.products():
            continue
        dataset = load_dataset(dataset_root(product, args.data, args.generated))
        config = load_model_config("patchcore", product=product)
        train_model(config, dataset, product=product, registry=registry, progress=False)
        log.info("trained %s", product)


def export(args: argparse.Namespace) -> None:
    from inspection.core.registry import Registry
    from inspection.training.export import ExportOptions
    from inspection.training.registry_export import RegistryExport, export_bundle

    report = previous_report(args.out, "results")
    for product in args.products.split(","):
        if product in report:
            continue
        version = Registry(args.registry).latest_version(product).version
        row: dict[str, Any] = {"family": family(product), "load_before": load_average()}
        for name, options in VARIANTS.items():
            registry = _variant_registry(args.registry, name, product)
            result = export_bundle(
                registry, product, ExportOptions(**options, force=True),
                RegistryExport(version=version),
            )  # fmt: skip
            row[name] = {
                "bundle": str(result.bundle_dir),
                "gate_passed": bool(result.gate.passed),
                "gate_failures": list(result.gate.failures),
                **operating_figures(result.metrics),
            }
        row["load_after"] = load_average()
        row["cpu"] = cpu_description()
        report[product] = row
        save_report(args.out, "results", report)
        log.info("%s: %s", product, {k: row[k]["gate_passed"] for k in VARIANTS})


def _variant_registry(trained: Path, name: str, product: str) -> Any:
    """The trained registry's ``product`` copied into one registry per variant: bundles are
    immutable and named by version and precision, so two INT8 bundles cannot share one."""
    import shutil

    from inspection.core.registry import Registry

    root = trained.with_name(f"{trained.name}-{name}")
    if (root / product).exists():
        shutil.rmtree(root / product)
    shutil.copytree(trained / product, root / product, ignore=shutil.ignore_patterns("bundles"))
    return Registry(root)


def latency(args: argparse.Namespace) -> None:
    from inspection.core.images import read_image
    from inspection.runtime.inspector import Inspector

    results = previous_report(args.out, "results")
    runs = {}
    for product in args.products.split(","):
        root = dataset_root(product, args.data, args.generated)
        images = [read_image(p) for p in sorted((root / "test/good").glob("*.png"))[:20]]
        for name in VARIANTS:
            inspector = Inspector.from_bundle(results[product][name]["bundle"])
            runs[f"{product}/{name}"] = (inspector.inspect, images)
    before = load_average()
    timed = interleaved_rounds(runs)
    out = {"cpu": cpu_description(), "load_before": before, "load_after": load_average()}
    save_report(args.out, "latency", {**out, "bundles": timed})


def report(args: argparse.Namespace) -> None:
    results = previous_report(args.out, "results")
    lat = previous_report(args.out, "latency")
    bundles = lat.get("bundles", {})
    cpus = sorted({row["cpu"] for row in results.values()})
    lines = [
        "# INT8: 7-bit weights in every layer vs 8 bits past the first layer",
        "",
        f"CPU: {', '.join(cpus) or '?'}. `bench/int8_weights.py`. Default PatchCore per "
        "product, held-out test split, each bundle calibrated on its own outputs and judged "
        "at its own 1 % operating point; the gate compares it with the FP32 bundle of the "
        "same version. Latency: `Inspector.inspect` p50 over 5 interleaved rounds of 20 good "
        f"images (load {lat.get('load_before', '?')} before, {lat.get('load_after', '?')} "
        "after).",
        "",
        "| product | family | bundle | gate | FRR | miss | image AUROC | pixel AUROC | AUPRO "
        "| p50 ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for product, row in results.items():
        for name in VARIANTS:
            lines.append(_row(product, row, name, bundles.get(f"{product}/{name}", {})))
    loads = [row[k] for row in results.values() for k in ("load_before", "load_after")]
    lines += [
        "",
        f"1-minute load around the exports: {', '.join(loads)}.",
        "",
        "Gate refusals:",
        "",
    ]
    for product, row in results.items():
        for name in VARIANTS:
            if not row[name]["gate_passed"]:
                lines.append(f"- {product} {name}: {'; '.join(row[name]['gate_failures'])}")
    save_report(args.out, "summary", {"products": sorted(results)}, "\n".join(lines) + "\n")


def _row(product: str, row: dict, name: str, timing: dict) -> str:
    bundle = row[name]
    overall = bundle["overall"]
    gate = "reference" if name == "fp32" else ("passed" if bundle["gate_passed"] else "REFUSED")
    cells = [percent(overall["false_reject_rate"]), percent(overall["miss_rate"])]
    cells += [f"{overall[k]:.3f}" for k in ("image_auroc", "pixel_auroc", "aupro")]
    p50 = timing.get("p50_ms")
    spread = timing.get("p50_range_ms", ["?", "?"])
    p50_cell = "-" if p50 is None else f"{p50} ({spread[0]}–{spread[1]})"
    return f"| {product} | {row['family']} | {name} | {gate} | {' | '.join(cells)} | {p50_cell} |"


PHASES = {"train": train, "export": export, "latency": latency, "report": report}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", nargs="?", choices=[*PHASES, "all"], default="all")
    parser.add_argument("--products", default="brick,grass,gravel,weave,tissue,part")
    parser.add_argument("--data", type=Path, default=ROOT / "datasets")
    parser.add_argument("--generated", type=Path, default=ROOT / "var" / "bench" / "data")
    parser.add_argument("--registry", type=Path, default=ROOT / "var" / "bench" / "int8_weights")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "int8_weights")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    quiet_logs()
    for name, phase in PHASES.items():
        if args.phase in (name, "all"):
            phase(args)


if __name__ == "__main__":
    main()
