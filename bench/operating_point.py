"""Good parts rejected and defects missed per kind at false-reject budgets, vs today's F1 point.

    python bench/operating_point.py [--site configs/site.yaml] [--data datasets]
                                    [--products brick,grass,gravel] [--train weave]
                                    [--out reports/operating_point]

For each product and model version of the site's registry (``make demo`` trains PatchCore and
STFPM per product), and for each product in ``--train`` (trained here, in a throw-away
registry: an evaluation family the operating-point defaults were not chosen on), the torch
model scores its validation and held-out test images. The image threshold is then chosen as
training chooses it (``core.operating_point.choose_threshold``) on the good calibration scores
(out-of-fold training scores the version recorded plus the validation good images) at budgets
0.5 %, 1 %, 2 % and 5 %, and by the old F1 rule on the validation split. At each threshold: the
share of held-out good parts rejected and the miss rate per defect kind on the held-out test
split with its 95 % interval (``core.operating_point.miss_at``). Verdict rule: NG when
score >= threshold (no product here sets a minimum defect area).

``--good-only brick``: a copy of the product without its defect folders (``train/good`` and
``test/good`` only) is trained (PatchCore), exported FP32 and INT8 (each calibrated on its own
outputs and gated) and judged on its held-out good images through the torch-free station
runtime (``runtime.self_check.check_live_bundle``). No timings: load is recorded for
completeness only. Writes ``<out>/operating_point.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import logging
import platform
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from _report import export_precisions, load_average, save_report

from inspection.core.config import load_site_config
from inspection.core.operating_point import (
    BUDGET_GRID,
    OperatingPoint,
    choose_threshold,
    miss_at,
)
from inspection.core.product_config import load_model_config, model_config_from_mapping
from inspection.core.registry import ModelRecord, Registry
from inspection.data.dataset import load_dataset
from inspection.training.evaluate import predict
from inspection.training.train import evaluation_splits, load_trained_model, train_model


def rows_of(record: ModelRecord, data: Path) -> dict[str, Any]:
    """One product/model: the budget rows and the F1 row."""
    config = model_config_from_mapping(record.config, where=record.model_version)
    dataset = load_dataset(data / record.product)
    validation, test = evaluation_splits(config, dataset)
    model = load_trained_model(record)
    val = predict(model, validation, image_size=config.image_size)
    held = predict(model, test, image_size=config.image_size)
    oof = np.asarray(list(record.good_scores().out_of_fold.values()), dtype=np.float64)
    good = np.r_[oof, val.scores[val.labels == 0]]
    points = [(f"budget {b:.1%}", OperatingPoint(budget=b)) for b in BUDGET_GRID]
    points.append(("F1 (old rule)", OperatingPoint(policy="f1")))
    rows = []
    for name, point in points:
        if point.policy == "f1":
            choice = choose_threshold(
                val.scores[val.labels == 0], point, defect_scores=val.scores[val.labels == 1]
            )
        else:
            choice = choose_threshold(good, point)
        rows.append(_row(name, choice, held))
    return {
        "product": record.product,
        "model": record.model_kind,
        "version": record.model_version,
        "out_of_fold_scores": int(oof.size),
        "validation_good": int((val.labels == 0).sum()),
        "test_good": int((held.labels == 0).sum()),
        "test_defective": int((held.labels == 1).sum()),
        "rows": rows,
    }


def _row(name: str, choice: Any, held: Any) -> dict[str, Any]:
    good = held.scores[held.labels == 0]
    rejected = int((good >= choice.threshold).sum())
    miss = miss_at(held.scores, held.labels, held.defect_types, choice.threshold)
    return {
        "point": name,
        "threshold": round(choice.threshold, 6),
        "n_calibration_good": choice.n_good,
        "bound": choice.false_reject_bound,
        "n_needed": choice.n_needed,
        "good_rejected": rejected,
        "good_total": int(good.size),
        "miss": {k: m.to_mapping() for k, m in miss.items()},
    }


def good_only(data: Path, product: str, scratch: Path) -> dict[str, Any]:
    """Train, export FP32 + INT8 and serve a good-only copy of ``product``."""
    import shutil

    from inspection.runtime.self_check import LabelledPath, check_live_bundle
    from inspection.training.registry_export import held_out_test_samples

    root = scratch / "datasets" / f"{product}_good_only"
    shutil.copytree(data / product / "train" / "good", root / "train" / "good")
    shutil.copytree(data / product / "test" / "good", root / "test" / "good")
    registry = Registry(scratch / "good-only-registry")
    dataset = load_dataset(root)
    config = load_model_config("patchcore", product=product)
    outcome = train_model(config, dataset, product=product, registry=registry, progress=False)
    record = outcome.record
    held_out = [LabelledPath(s.path, 0) for s in held_out_test_samples(record, dataset)]
    bundles = []
    for result in export_precisions(registry, product, record.version).values():
        check = check_live_bundle(result.bundle_dir, held_out)
        choice = result.metadata.output_calibration.operating
        bundles.append(
            {
                "bundle": result.bundle_id,
                "gate_passed": result.gate.passed,
                "operating_point": choice.describe(),
                "good_rejected": check.figures.rejected_good(),
                "good_total": check.figures.n_good,
                "summary": check.summary(),
            }
        )
    return {
        "product": f"{product} (good-only copy)",
        "train_good": len(dataset.train_samples),
        "test_good": sum(s.label == 0 for s in dataset.test_samples),
        "training_choice": record.calibration().operating.describe(),
        "bundles": bundles,
    }


def markdown(results: list[dict[str, Any]], env: dict[str, Any]) -> str:
    lines = [
        "# Operating point: good parts rejected vs defects missed",
        "",
        "Written by `bench/operating_point.py` (see its docstring). Held-out test split; threshold",
        "chosen on out-of-fold training scores + validation good images (budgets) or on the",
        "validation split (F1). Miss per kind: missed/n and rate [95 % interval]. A bound marked",
        "`*` is above the budget: too few good scores (n needed in brackets).",
        "",
        f"CPU: {env['cpu']}; load at start {env['load']}.",
        "",
    ]
    for result in results:
        kinds = sorted({k for row in result["rows"] for k in row["miss"]})
        lines += [
            f"## {result['product']} / {result['model']} ({result['version']})",
            "",
            f"{result['out_of_fold_scores']} out-of-fold + {result['validation_good']} validation "
            f"good scores; held out: {result['test_good']} good, {result['test_defective']} "
            "defective.",
            "",
            "| point | good rejected | bound | " + " | ".join(kinds) + " |",
            "|---|---|---|" + "---|" * len(kinds),
        ]
        for row in result["rows"]:
            bound = "-" if row["bound"] is None else f"{row['bound']:.2%}"
            if row["n_needed"]:
                bound += f"* (n={row['n_calibration_good']}, {row['n_needed']} needed)"
            cells = [
                f"{m['missed']}/{m['n']} {m['value']:.0%} [{m['low']:.0%}-{m['high']:.0%}]"
                for m in (row["miss"][k] for k in kinds)
            ]
            lines.append(
                f"| {row['point']} | {row['good_rejected']}/{row['good_total']} | {bound} | "
                + " | ".join(cells)
                + " |"
            )
        lines.append("")
    for item in env.get("good_only", []):
        lines += [
            f"## {item['product']}: no defect folders",
            "",
            f"{item['train_good']} train/good, {item['test_good']} test/good (30 % calibrate, the "
            f"rest are held out). Training: {item['training_choice']}. Miss rates: unknown (no "
            "defect images).",
            "",
            "| bundle | gate | operating point | held-out good rejected (station runtime) |",
            "|---|---|---|---|",
        ]
        for b in item["bundles"]:
            gate = "passed" if b["gate_passed"] else "refused"
            lines.append(
                f"| {b['bundle']} | {gate} | {b['operating_point']} | "
                f"{b['good_rejected']}/{b['good_total']} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", default=None)
    parser.add_argument("--data", type=Path, default=Path("datasets"))
    parser.add_argument("--products", default="brick,grass,gravel")
    parser.add_argument("--train", default="", help="Products to train here (e.g. weave).")
    parser.add_argument("--good-only", default="", help="Products to copy without defects.")
    parser.add_argument("--out", type=Path, default=Path("reports/operating_point"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    env = {"cpu": _cpu_model(), "load": load_average()}
    registry = Registry(load_site_config(args.site).registry_dir)
    results = []
    for product in [p for p in args.products.split(",") if p]:
        for record in registry.versions(product):
            results.append(rows_of(record, args.data))
    with tempfile.TemporaryDirectory(prefix="bench-op-") as scratch:
        scratch_registry = Registry(Path(scratch) / "registry")
        for product in [p for p in args.train.split(",") if p]:
            for kind in ("patchcore", "stfpm"):
                config = load_model_config(kind, product=product)
                dataset = load_dataset(args.data / product)
                outcome = train_model(
                    config, dataset, product=product, registry=scratch_registry, progress=False
                )
                results.append(rows_of(outcome.record, args.data))
        env["good_only"] = [
            good_only(args.data, p, Path(scratch)) for p in args.good_only.split(",") if p
        ]
    report = {"environment": env, "results": results}
    path = save_report(args.out, "operating_point", report, markdown(results, env))
    print(path)


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text(encoding="utf-8").splitlines() if cpuinfo.is_file() else []
    for line in lines:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


if __name__ == "__main__":
    main()
