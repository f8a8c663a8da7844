"""A/B of two model settings through the product path, shared by the benches that need one.

Per product and role (a named tuple of ``ModelConfig`` overrides), ``run_roles`` trains with
``train_model`` and exports FP32 and INT8 bundles with ``export_bundle``, exactly as
``inspection train`` / ``inspection export`` do, and keeps each bundle's own figures at its own
operating point; ``time_bundles`` times ``Inspector.inspect`` of every bundle, rounds
interleaved. Products: ``TUNED`` (where a lever was found), ``EVALUATION`` (generated here if
missing and tuned on by nothing), ``REGRESSION``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _report import (
    cpu_description,
    export_precisions,
    interleaved_rounds,
    load_average,
    percent,
    previous_report,
    save_report,
)

TUNED, EVALUATION, REGRESSION = ("grass", "gravel"), ("weave", "tissue", "part"), ("brick",)
PRODUCTS = (*TUNED, *EVALUATION, *REGRESSION)
PRECISIONS = ("fp32", "int8")
log = logging.getLogger("product_ab")


def family(product: str) -> str:
    return (
        "found on" if product in TUNED else "evaluation" if product in EVALUATION else "regression"
    )


def dataset_root(product: str, data: Path, generated: Path) -> Path:
    """The product's demo dataset: ``data/<product>`` or, for the evaluation family, written
    once into ``generated`` (60 train, 60 good + 30 per defect kind test images)."""
    from inspection.data.demo import write_demo

    if (data / product).is_dir():
        return data / product
    if not (generated / product).is_dir():
        write_demo(generated, (product,), n_test_good=60, n_test_per_defect=30)
    return generated / product


def run_roles(
    args: Any,
    roles: Mapping[str, tuple[str, ...]],
    record_extra: Callable[[Any], dict[str, Any]],
) -> None:
    """Train and export every role per product of ``args.products``; one JSON row per
    (product, role) in ``args.out/results.json`` (rows already there are kept, not re-run).
    ``record_extra(record)``: the lever's own entries for the row."""
    from inspection.core.product_config import load_model_config
    from inspection.core.registry import Registry
    from inspection.data.dataset import load_dataset
    from inspection.training.train import train_model

    report = previous_report(args.out, "results")
    registry = Registry(args.registry)
    for product in args.products.split(","):
        dataset = load_dataset(dataset_root(product, args.data, args.generated))
        for role, overrides in roles.items():
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
                **record_extra(record),
                "test_scores": [round(float(s), 6) for s in outcome.predictions.scores],
                "test_labels": [int(v) for v in outcome.predictions.labels],
                "test_kinds": list(outcome.predictions.defect_types),
                "bundles": export_figures(registry, product, record.version),
                "load_before": load,
                "load_after": load_average(),
                "cpu": cpu_description(),
            }
            save_report(args.out, "results", report)
            log.info("%s: %s", key, {p: b["overall"] for p, b in report[key]["bundles"].items()})


def export_figures(registry: Any, product: str, version: str) -> dict[str, Any]:
    """FP32 and INT8 bundles of ``version`` with the figures at their own operating point."""
    return {
        precision: {
            "bundle": str(result.bundle_dir),
            "gate_passed": bool(result.gate.passed),
            "image_threshold": result.metadata.image_threshold,
            **operating_figures(result.metrics),
        }
        for precision, result in export_precisions(
            registry, product, version, PRECISIONS, force=True
        ).items()
    }


def operating_figures(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """An export's held-out figures at its own operating point: ``overall`` and the miss rate
    per defect kind (``miss_per_kind``)."""
    return {
        "overall": {k: metrics["overall"].get(k) for k in (
            "false_reject_rate", "miss_rate", "image_auroc", "pixel_auroc", "aupro",
            "region_recall", "n_good", "n_defective")},
        "miss_per_kind": {
            kind: figures.get("miss_rate") for kind, figures in metrics["per_defect"].items()
        },
    }  # fmt: skip


def time_bundles(args: Any) -> None:
    """p50 of ``Inspector.inspect`` for every bundle of ``run_roles`` (batch 1, station path),
    the bundles' rounds interleaved (``interleaved_rounds``), into ``latency.json``."""
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


def comparison_table(
    results: dict,
    latency_report: dict,
    roles: tuple[str, ...],
    choice: tuple[str, Callable[[dict], str]],
) -> list[str]:
    """Markdown table: per product and role, the FP32 bundle's figures at its operating point,
    the image AUROC interval and the paired gain of each role over ``roles[0]`` (the same
    resampled images), and each bundle's p50. ``choice``: (column title, cell of a row)."""
    from inspection.core.bootstrap import auroc_gain_interval, auroc_interval

    lat = latency_report.get("bundles", {})
    lines = [f"| product | family | config | {choice[0]} | FRR good | miss | image AUROC [95 %] "
             f"| gain vs {roles[0]} [95 %] | pixel AUROC | AUPRO | INT8 gate | fit s "
             "| p50 FP32 / INT8 ms |", "|" + " --- |" * 13]  # fmt: skip
    for product in PRODUCTS:
        reference = results.get(f"{product}/{roles[0]}")
        for role in roles:
            row = results.get(f"{product}/{role}")
            if row is None:
                continue
            labels = np.asarray(row["test_labels"])
            scores = np.asarray(row["test_scores"])
            ci = auroc_interval(scores, labels)
            gain = "-"
            if role != roles[0] and reference is not None:
                g = auroc_gain_interval(scores, np.asarray(reference["test_scores"]), labels)
                gain = f"{g.value:+.3f} [{g.low:+.3f}, {g.high:+.3f}]"
            fp32 = row["bundles"]["fp32"]["overall"]
            p50 = " / ".join(
                _ms(lat.get(f"{product}/{role}/{p}", {}).get("p50_ms")) for p in PRECISIONS
            )
            lines.append(
                f"| {product} | {family(product)} | {role} | {choice[1](row)} "
                f"| {percent(fp32['false_reject_rate'])} of {fp32['n_good']} "
                f"| {percent(fp32['miss_rate'])} | {ci.value:.3f} [{ci.low:.3f}, {ci.high:.3f}] "
                f"| {gain} | {fp32['pixel_auroc']:.3f} | {fp32['aupro']:.3f} "
                f"| {'passed' if row['bundles']['int8']['gate_passed'] else 'refused'} "
                f"| {row['fit_s']} | {p50} |"
            )
    return lines


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def kinds_section(results: dict) -> list[str]:
    """Markdown: each row's FP32 miss rate per defect kind at its operating point."""
    lines = ["## Miss rate per defect kind at the operating point (FP32 bundle)", ""]
    for key, row in results.items():
        kinds = row["bundles"]["fp32"]["miss_per_kind"]
        lines.append(f"- **{key}**: " + ", ".join(f"{k} {percent(v)}" for k, v in kinds.items()))
    return lines


def machine_section(results: dict, lat: dict) -> list[str]:
    """Markdown: the CPU and load of the training/export rows and of the latency run."""
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


def plot_roles(path: Path, results: dict, roles: tuple[str, ...]) -> None:
    """Held-out image AUROC and miss rate at the 1 % budget per product, the roles side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    products = [p for p in PRODUCTS if f"{p}/{roles[0]}" in results]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    width = 0.8 / len(roles)
    for index, role in enumerate(roles):
        offset = (index - (len(roles) - 1) / 2) * width
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


def plot_kinds(path: Path, results: dict, roles: tuple[str, ...]) -> None:
    """Held-out AUROC of each defect kind against the good parts, per product and role."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from inspection.core.metrics import image_auroc

    products = [p for p in PRODUCTS if any(k.startswith(f"{p}/") for k in results)]
    fig, axes = plt.subplots(1, len(products), figsize=(3.2 * len(products), 3.4), sharey=True)
    for ax, product in zip(np.atleast_1d(axes), products, strict=True):
        for index, role in enumerate(roles):
            row = results.get(f"{product}/{role}")
            if row is None or "test_kinds" not in row:
                continue
            kinds = np.asarray(row["test_kinds"])
            labels, scores = np.asarray(row["test_labels"]), np.asarray(row["test_scores"])
            names = sorted({k for k, y in zip(kinds, labels, strict=True) if y == 1})
            values = []
            for name in names:
                keep = (labels == 0) | (kinds == name)
                values.append(image_auroc(scores[keep], (kinds[keep] == name).astype(int)))
            width = 0.8 / len(roles)
            x = np.arange(len(names)) + (index - (len(roles) - 1) / 2) * width
            ax.bar(x, values, width, label=role)
            ax.set_xticks(np.arange(len(names)), names, rotation=30)
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_title(product)
        ax.set_ylim(0.3, 1.02)
    np.atleast_1d(axes)[0].set_ylabel("held-out AUROC vs good")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def add_arguments(parser: Any, out: Path, registry: Path) -> None:
    """The phases and paths every A/B bench takes."""
    parser.add_argument("phase", choices=("run", "latency", "report"))
    parser.add_argument("--products", default=",".join(PRODUCTS))
    parser.add_argument("--data", type=Path, default=Path("datasets"))
    parser.add_argument("--generated", type=Path, default=Path("var/bench_data"))
    parser.add_argument("--registry", type=Path, default=registry)
    parser.add_argument("--out", type=Path, default=out)


def bench_main(doc: str, out: Path, registry: Path, phases: Mapping[str, Callable]) -> None:
    """Parse the A/B arguments and run the chosen phase (``run``, ``latency``, ``report``)."""
    import argparse
    import os

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    add_arguments(parser, out, registry)
    args = parser.parse_args()
    quiet_logs()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    phases[args.phase](args)


@dataclass(frozen=True)
class ABBench:
    """One A/B bench: where it writes, its roles, and what its report adds to the shared parts.

    ``record_extra(record)``: the lever's own entries for a results row; ``column``: (title,
    cell of a row) for the lever's own column of the comparison table."""

    out: Path
    registry: Path
    roles: Mapping[str, tuple[str, ...]]
    header: Sequence[str]
    record_extra: Callable[[Any], dict[str, Any]]
    column: tuple[str, Callable[[dict], str]]
    per_kind_plot: bool = True


def write_report(args: Any, bench: ABBench) -> None:
    """``summary.md``, ``frr_auroc.png`` (and ``per_kind.png``) from the JSON files."""
    results = previous_report(args.out, "results")
    latency_report = previous_report(args.out, "latency")
    roles = tuple(bench.roles)
    lines = [
        *bench.header,
        *comparison_table(results, latency_report, roles, bench.column),
        "",
        *kinds_section(results),
        "",
        *machine_section(results, latency_report),
    ]
    (args.out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    plot_roles(args.out / "frr_auroc.png", results, roles)
    if bench.per_kind_plot:
        plot_kinds(args.out / "per_kind.png", results, roles)


def ab_main(doc: str, bench: ABBench) -> None:
    """An A/B bench's command line: ``run`` (train and export every role), ``latency``
    (``time_bundles``), ``report`` (``write_report``)."""
    bench_main(doc, bench.out, bench.registry, {
        "run": lambda args: run_roles(args, bench.roles, bench.record_extra),
        "latency": time_bundles,
        "report": lambda args: write_report(args, bench),
    })  # fmt: skip


def image_score_choice(record: Any) -> dict[str, Any]:
    """A record's image-score choice and whether its local statistics were kept."""
    return {
        "image_score": record.extra.get("image_score"),
        "local_statistics_kept": bool((record.extra.get("local_statistics") or {}).get("kept")),
    }


def quiet_logs() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for name in ("lightning", "lightning_fabric", "nncf", "anomalib", "inspection"):
        logging.getLogger(name).setLevel(logging.WARNING)
