"""Local colour statistics fused into PatchCore (``local_statistics``), through the product path.

    /work/bin/heavy python bench/local_stats.py run [--products grass,gravel,weave,tissue,part,brick]
    /work/bin/bench python bench/local_stats.py latency
    python bench/local_stats.py report

``run``: per product, the PatchCore default (``local_statistics=false``) and the candidate
(``local_statistics=auto``: fitted, kept only when validation says it helps) are trained with
``train_model`` and exported (FP32 and INT8, gate recorded) with ``export_bundle``, exactly as
``inspection train`` / ``inspection export`` do. Figures are the **bundles' own**, at their own
operating point (1 % false-reject budget): held-out false-reject rate of good parts first, then
miss rate per defect kind, image AUROC with a bootstrap interval and the paired interval of the
gain over the default, pixel AUROC, AUPRO. ``grass`` and ``gravel`` are the products the
statistics lever was found on (``reports/hard_surfaces``); ``weave``, ``tissue`` and ``part``
(an aligned object) are the evaluation family, generated here if missing and tuned on by
nothing; ``brick`` is the regression check. ``latency`` times each bundle's
``Inspector.inspect`` (p50 over 5 rounds, the bundles' rounds interleaved). ``report`` writes ``summary.md`` and a plot.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from _report import (
    cpu_description,
    interleaved_rounds,
    load_average,
    percent,
    previous_report,
    save_report,
)

OUT = Path("reports/local_stats")
ROLES = {"default": ("local_statistics=false",), "auto": ("local_statistics=auto",)}
TUNED, EVALUATION, REGRESSION = ("grass", "gravel"), ("weave", "tissue", "part"), ("brick",)
PRECISIONS = ("fp32", "int8")
log = logging.getLogger("local_stats")


def dataset_root(product: str, data: Path, generated: Path) -> Path:
    """The product's demo dataset: ``data/<product>`` or, for the evaluation family, written
    once into ``generated`` (60 train, 60 good + 30 per defect kind test images)."""
    from inspection.data.demo import write_demo

    if (data / product).is_dir():
        return data / product
    if not (generated / product).is_dir():
        write_demo(generated, (product,), n_test_good=60, n_test_per_defect=30)
    return generated / product


def run(args: argparse.Namespace) -> None:
    """Train and export both roles per product; one JSON row per (product, role)."""
    from inspection.core.registry import Registry
    from inspection.data.dataset import load_dataset
    from inspection.training.config import load_model_config
    from inspection.training.train import train_model

    report = previous_report(args.out, "results")
    registry = Registry(args.registry)
    for product in args.products.split(","):
        dataset = load_dataset(dataset_root(product, args.data, args.generated))
        for role, overrides in ROLES.items():
            key = f"{product}/{role}"
            if key in report:
                continue
            config = load_model_config("patchcore", product=product, overrides=overrides)
            load = load_average()
            outcome = train_model(config, dataset, product=product, registry=registry,
                                  progress=False)  # fmt: skip
            record = outcome.record
            report[key] = {
                "product": product,
                "role": role,
                "overrides": list(overrides),
                "version": record.model_version,
                "fit_s": record.metrics.get("fit_seconds"),
                "bank": int(outcome.model.model.memory_bank.shape[0]),
                "local_statistics": record.extra.get("local_statistics"),
                "test_scores": [round(float(s), 6) for s in outcome.predictions.scores],
                "test_labels": [int(v) for v in outcome.predictions.labels],
                "bundles": _export(registry, product, record.version),
                "load_before": load,
                "load_after": load_average(),
                "cpu": cpu_description(),
            }
            save_report(args.out, "results", report)
            log.info("%s: %s", key, {p: b["overall"] for p, b in report[key]["bundles"].items()})


def _export(registry: Any, product: str, version: str) -> dict[str, Any]:
    """FP32 and INT8 bundles of ``version`` with the figures at their own operating point."""
    from inspection.training.export import ExportOptions
    from inspection.training.registry_export import RegistryExport, export_bundle

    bundles = {}
    for precision in PRECISIONS:
        result = export_bundle(
            registry, product, ExportOptions(precision=precision, force=True),
            RegistryExport(version=version),
        )  # fmt: skip
        metrics = result.metrics
        bundles[precision] = {
            "bundle": str(result.bundle_dir),
            "gate_passed": bool(result.gate.passed),
            "image_threshold": result.metadata.image_threshold,
            "overall": {k: metrics["overall"].get(k) for k in (
                "false_reject_rate", "miss_rate", "image_auroc", "pixel_auroc", "aupro",
                "region_recall", "n_good", "n_defective")},
            "miss_per_kind": {
                kind: figures.get("miss_rate") for kind, figures in metrics["per_defect"].items()
            },
        }  # fmt: skip
    return bundles


def latency(args: argparse.Namespace) -> None:
    """p50 of ``Inspector.inspect`` for every bundle of ``run`` (batch 1, station path), the
    bundles' rounds interleaved (``interleaved_rounds``)."""
    from inspection.core.images import read_image
    from inspection.runtime.inspector import Inspector

    results = previous_report(args.out, "results")
    out: dict[str, Any] = {"cpu": cpu_description(), "load_before": load_average()}
    runs, precision = {}, {}
    for key, row in results.items():
        root = dataset_root(row["product"], args.data, args.generated)
        images = [read_image(p) for p in sorted((root / "test/good").glob("*.png"))[:20]]
        for name, bundle in row["bundles"].items():
            inspector = Inspector.from_bundle(bundle["bundle"])
            runs[f"{key}/{name}"] = (inspector.inspect, images)
            precision[f"{key}/{name}"] = inspector.metadata.inference_precision
    timed = interleaved_rounds(runs)
    out["bundles"] = {k: {**v, "inference_precision": precision[k]} for k, v in timed.items()}
    out["load_after"] = load_average()
    save_report(args.out, "latency", out)
    for key, figures in out["bundles"].items():
        log.info("%s %s", key, figures)


def report(args: argparse.Namespace) -> None:
    """``summary.md`` and ``frr_auroc.png`` from ``results.json`` and ``latency.json``."""
    from inspection.core.bootstrap import auroc_gain_interval, auroc_interval

    results = previous_report(args.out, "results")
    lat = previous_report(args.out, "latency").get("bundles", {})
    lines = [*_header(), "| product | family | config | kept? (validation AUROC, PatchCore -> fused) "
             "| FRR good | miss | image AUROC [95 %] | gain vs default [95 %] | pixel AUROC | AUPRO "
             "| INT8 gate | fit s | p50 FP32 / INT8 ms |", "|" + " --- |" * 13]  # fmt: skip
    for product in [p for p in (*TUNED, *EVALUATION, *REGRESSION)]:
        default = results.get(f"{product}/default")
        for role in ROLES:
            row = results.get(f"{product}/{role}")
            if row is None:
                continue
            labels = np.asarray(row["test_labels"])
            scores = np.asarray(row["test_scores"])
            ci = auroc_interval(scores, labels)
            gain = "-"
            if role != "default" and default is not None:
                g = auroc_gain_interval(scores, np.asarray(default["test_scores"]), labels)
                gain = f"{g.value:+.3f} [{g.low:+.3f}, {g.high:+.3f}]"
            fp32 = row["bundles"]["fp32"]["overall"]
            p50 = " / ".join(
                _ms(lat.get(f"{product}/{role}/{p}", {}).get("p50_ms")) for p in PRECISIONS
            )
            lines.append(
                f"| {product} | {_family(product)} | {role} | {_kept(row)} "
                f"| {percent(fp32['false_reject_rate'])} of {fp32['n_good']} "
                f"| {percent(fp32['miss_rate'])} | {ci.value:.3f} [{ci.low:.3f}, {ci.high:.3f}] "
                f"| {gain} | {fp32['pixel_auroc']:.3f} | {fp32['aupro']:.3f} "
                f"| {'passed' if row['bundles']['int8']['gate_passed'] else 'refused'} "
                f"| {row['fit_s']} | {p50} |"
            )
    lines += ["", *_kinds(results), "", *_machine(results, previous_report(args.out, "latency"))]
    (args.out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _plot(args.out / "frr_auroc.png", results)


def _header() -> list[str]:
    return [
        "# Local colour statistics fused into PatchCore, through the product path",
        "",
        "Produced by `bench/local_stats.py` (`run` under `/work/bin/heavy`, `latency` under",
        "`/work/bin/bench`, `report`). Every figure is an exported FP32 bundle's own, on the",
        "held-out test split, at the bundle's own operating point (1 % false-reject budget).",
        "`auto` fits the statistics model and keeps it only when the fused validation image",
        "AUROC beats PatchCore's by >= 0.01 and validation pixel AUROC drops by <= 0.01 (test",
        "images never choose); refused, the bundle is plain PatchCore. `grass` and `gravel` are",
        "where the lever was found (`reports/hard_surfaces`); `weave`, `tissue`, `part` are the",
        "evaluation family (nothing tuned on them); `brick` is the regression check. Intervals:",
        "stratified bootstrap, 2000 resamples; the gain's is paired (same resampled images).",
        "",
    ]


def _kinds(results: dict) -> list[str]:
    lines = ["## Miss rate per defect kind at the operating point (FP32 bundle)", ""]
    for key, row in results.items():
        kinds = row["bundles"]["fp32"]["miss_per_kind"]
        lines.append(f"- **{key}**: " + ", ".join(f"{k} {percent(v)}" for k, v in kinds.items()))
    return lines


def _machine(results: dict, lat: dict) -> list[str]:
    loads = sorted({r["load_before"] for r in results.values()})
    return [
        "## Machine",
        "",
        f"- training/export: {next(iter(results.values()), {}).get('cpu', '?')}; "
        f"load before each row {loads[0] if loads else '?'} .. {loads[-1] if loads else '?'}",
        f"- latency: {lat.get('cpu', '-')}; load {lat.get('load_before', '-')} -> "
        f"{lat.get('load_after', '-')}; p50 = median of 5 interleaved rounds x 20 images (ranges in "
        "`latency.json`)",
    ]


def _plot(path: Path, results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    products = [p for p in (*TUNED, *EVALUATION, *REGRESSION) if f"{p}/default" in results]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    width = 0.38
    for offset, role in ((-width / 2, "default"), (width / 2, "auto")):
        rows = [results.get(f"{p}/{role}") for p in products]
        auroc = [r["bundles"]["fp32"]["overall"]["image_auroc"] if r else 0 for r in rows]
        miss = [r["bundles"]["fp32"]["overall"]["miss_rate"] if r else 0 for r in rows]
        x = np.arange(len(products)) + offset
        axes[0].bar(x, auroc, width, label=role)
        axes[1].bar(x, miss, width, label=role)
    for ax, title in zip(axes, ("held-out image AUROC", "miss rate at 1 % FRR budget"),
                         strict=True):  # fmt: skip
        ax.set_xticks(np.arange(len(products)), products)
        ax.set_title(title)
        ax.legend()
    axes[0].set_ylim(0.4, 1.0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _family(product: str) -> str:
    return (
        "found on" if product in TUNED else "evaluation" if product in EVALUATION else "regression"
    )


def _kept(row: dict) -> str:
    choice = row.get("local_statistics")
    if not choice:
        return "-"
    evidence = choice.get("validation_auroc") or {}
    shown = f"image {evidence.get('patchcore', '?')} -> {evidence.get('fused', '?')}"
    if "pixel_fused" in evidence:
        shown += f", pixel {evidence['pixel_patchcore']} -> {evidence['pixel_fused']}"
    return f"{'yes' if choice['kept'] else 'no'} ({shown})"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=("run", "latency", "report"))
    parser.add_argument("--products", default=",".join((*TUNED, *EVALUATION, *REGRESSION)))
    parser.add_argument("--data", type=Path, default=Path("datasets"))
    parser.add_argument("--generated", type=Path, default=Path("var/bench_data"))
    parser.add_argument("--registry", type=Path, default=Path("var/local_stats/registry"))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for name in ("lightning", "lightning_fabric", "nncf", "anomalib", "inspection"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    {"run": run, "latency": latency, "report": report}[args.phase](args)


if __name__ == "__main__":
    main()
