"""INT8 against FP32 on this CPU, per demo model: the export gate's figures and the station's p50.

    heavy --alone .venv/bin/python bench/int8.py [--registry var/registry] [--engines fp32 int8]

For brick, grass and gravel PatchCore and brick STFPM (the latest version of each in the
registry, e.g. ``make demo``'s), exports FP32 and INT8 (forced, so a refused bundle is measured
too) into a scratch registry and records per bundle: image AUROC, false rejects and misses per
kind at its own operating point, the gate's verdict against FP32, the threshold raise, the
defects whose verdict differs from FP32's and the station's p50 per stage (``runtime.py``'s
worker). Writes ``reports/runtime/int8.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _report import load_average, recorded, save_report, table  # noqa: E402
from runtime import export_forced, graph_limit, measure  # noqa: E402

log = logging.getLogger("bench.int8")
MODELS = (("brick", "patchcore"), ("grass", "patchcore"), ("gravel", "patchcore"),
          ("brick", "stfpm"))  # fmt: skip
ENGINES = ("fp32", "int8")
COLUMNS = ("model", "bundle", "image AUROC", "false rejects", "misses per kind", "gate",
           "threshold raise", "export s", "p50 ms", "p50 per stage (ms)")  # fmt: skip


def copy_versions(source: Path, target: Path, products: set[str]) -> None:
    """A registry at ``target`` holding ``source``'s trained versions of ``products``, no bundle."""
    for product in products:
        shutil.copytree(source / product / "versions", target / product / "versions")


def figures(meta: Any) -> dict[str, Any]:
    """Image AUROC, false rejects, misses per kind, gate and threshold raise of a bundle."""
    metrics, record = meta.evaluation(), meta.export_record()
    overall = metrics.overall
    gate = record.gate
    operating = meta.output_calibration.operating if meta.output_calibration else None
    return {
        "image_auroc": overall.image_auroc,
        "false_rejects": f"{round((overall.false_reject_rate or 0) * overall.n_good)}/{overall.n_good}",
        "misses": {
            kind: f"{round((m.miss_rate or 0) * m.n_defective)}/{m.n_defective}"
            for kind, m in metrics.per_defect.items()
            if m.n_defective
        },
        "gate": "reference"
        if meta.precision == "fp32"
        else ("passed" if gate.passed else "REFUSED: " + gate.refusal()),
        "threshold_raw": metrics.image_threshold,
        "transfer_raise": operating.transfer_raise if operating else None,
        "kept_fp32": list(meta.quantization_set.kept_fp32) if meta.quantization_set else [],
    }


def flipped(fp32_dir: Path, other_dir: Path) -> list[str]:
    """Test images judged differently from FP32: name, kind, normalised scores (0.5 = NG)."""
    from inspection.core.validation_scores import read_validation_scores

    ref, own = read_validation_scores(fp32_dir), read_validation_scores(other_dir)
    rows = zip(ref.names, ref.defect_types, ref.labels, ref.scores, own.scores, strict=True)
    return [f"{kind}/{name} {'defect' if label else 'good'}: FP32 {a:.3f} -> {b:.3f}"
            for name, kind, label, a, b in rows if (a >= 0.5) != (b >= 0.5)]  # fmt: skip


def bench_model(
    source: Path, scratch: Path, product: str, kind: str, engines: tuple[str, ...] = ENGINES
) -> dict[str, Any]:
    import time

    from inspection.core.registry import Registry
    from inspection.data.dataset import load_dataset
    from inspection.training.registry_export import held_out_test_samples

    record = next(
        r for r in reversed(Registry(source).bundles.versions(product)) if r.model_kind == kind
    )
    rows, dirs, fp32_measured = {}, {}, None
    for engine in engines:
        registry = Registry(scratch / "new")
        reference = None if engine == "fp32" else fp32_measured
        start = time.perf_counter()
        result = export_forced(registry, product, record.version, engine, reference=reference)
        fp32_measured = result.measured if engine == "fp32" else fp32_measured
        dirs[engine] = result.bundle_dir
        rows[engine] = figures(result.metadata) | {"export_s": time.perf_counter() - start}
    samples = held_out_test_samples(record, load_dataset(record.dataset_root()))
    images = scratch / f"{product}-{kind}-images.json"
    images.write_text(json.dumps([str(s.path) for s in samples]))
    for engine in ("fp32", "int8"):
        timed = measure(engine, dirs[engine], images, scratch)
        rows[engine]["p50_ms"] = timed["latency_ms"]["p50"]
        rows[engine]["stages_ms_p50"] = timed["stages_ms_p50"]
        rows[engine]["load"] = timed["loadavg_1m"]
        rows[engine]["executed"] = timed["executed_precision"]
    for engine in engines[1:]:
        rows[engine]["flipped_vs_fp32"] = flipped(dirs["fp32"], dirs[engine])
    limit = graph_limit(dirs["fp32"])
    return {"version": record.version, "engines": rows, "limit": limit}


def markdown(report: dict[str, Any]) -> str:
    env = report["env"]
    rows = [_row(f"{name} {data['version']}", engine, row)
            for name, data in report["models"].items()
            for engine, row in data["engines"].items()]  # fmt: skip
    lines = [
        "# INT8 against FP32, per demo model, on one CPU",
        "",
        f"CPU: {env['cpu']}. `{env['command']}` at {env['commit']}; 1-minute load "
        f"{env['load_before']} before, {env['load_after']} after{report.get('note', '')}.",
        "",
        "Each bundle is calibrated on its own outputs and judged at its own 1 % operating point on "
        "the held-out test split; the gate compares it with the FP32 bundle of the same version "
        "(tolerances unchanged). `int8`: distance head and input stem in FP32. Export s: the "
        "bundle's export (quantise, calibrate, measure, gate). "
        "p50: `Inspector.inspect` of a decoded image at batch 1 (`bench/runtime.py`'s worker), "
        "stages as the station records them.",
        "",
        *table(COLUMNS, rows),
        "",
        "Verdicts that differ from FP32's (normalised scores, 0.5 = the bundle's threshold):",
        "",
    ]
    for name, data in report["models"].items():
        for engine in list(data["engines"])[1:]:
            flips = data["engines"][engine]["flipped_vs_fp32"]
            lines.append(f"- {name} {engine}: {'; '.join(flips) if flips else 'none'}")
    lines += ["", "Kept in FP32 by the INT8 export (each bundle's record):", ""]
    for name, data in report["models"].items():
        kept = data["engines"]["int8"]["kept_fp32"]
        lines += [f"- {name}: " + "; ".join(kept)]
    return "\n".join(lines) + "\n"


def _row(model: str, engine: str, row: dict[str, Any]) -> list[str]:
    def f(key: str, fmt: str = ".3f") -> str:
        return "-" if row.get(key) is None else f"{row[key]:{fmt}}"

    stages = ", ".join(f"{k} {v:.2f}" for k, v in row.get("stages_ms_p50", {}).items())
    misses = ", ".join(f"{k} {v}" for k, v in row["misses"].items())
    return [model, engine, f("image_auroc"), row["false_rejects"], misses, row["gate"],
            f("transfer_raise"), f("export_s", ".0f"), f("p50_ms", ".2f"),
            stages or "-"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", type=Path, default=ROOT / "var" / "registry")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "runtime")
    parser.add_argument("--models", nargs="*", default=[f"{p}:{k}" for p, k in MODELS])
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES,
                        help="fp32 first (the gate's reference)")  # fmt: skip
    parser.add_argument("--note", default="", help="How it ran, e.g. ' (heavy --alone)'.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    models: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as tmp, recorded() as env:
        scratch = Path(tmp)
        models_asked = [m.split(":") for m in args.models]
        copy_versions(args.registry, scratch / "new", {p for p, _ in models_asked})
        for product, kind in models_asked:
            models[f"{product} {kind}"] = bench_model(
                args.registry, scratch, product, kind, tuple(args.engines)
            )
            env["load_after"] = load_average()  # saved after each model: a cut run keeps its rows
            report = {"env": env, "models": models, "note": args.note}
            save_report(args.out, "int8", report, markdown(report), default=str)


if __name__ == "__main__":
    main()
