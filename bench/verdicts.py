"""Per-defect-type pixel F1 and region recall: pooled global threshold vs selected segmentation.

    python bench/verdicts.py [--data datasets] [--out reports/verdicts]
                             [--products brick,grass,gravel,weave,tissue] [--models patchcore]

For each product and model: train once (throw-away registry) and take the version's own
calibration (``ModelRecord.calibration``: the image threshold at the model's operating point,
a 1 % false-reject budget by default, on the validation good images plus out-of-fold training
scores; min-max normalisation; ``select_segmentation``), then judge the held-out test split
twice with the same model outputs:

- before: the pooled rule, verdict ``score >= 0.5`` and, independently, mask ``map >= 0.5``
  (the pixel threshold that maximises pooled validation pixel F1);
- after: ``core.verdict.judge`` with the selected segmentation (what the station runs).

Also the post-processing time of ``judge`` per image (p50/p95 ms) at the model resolution.
Writes ``<out>/verdicts.json`` and ``<out>/verdicts.md``. Run through ``/work/bin/bench``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _report import cpu_description, save_report

from inspection.core.calibration import normalize_maps, normalize_scores
from inspection.core.metrics import EvaluationMetrics, compute_metrics, judge_all, threshold_masks
from inspection.core.product_config import load_model_config
from inspection.core.registry import Registry
from inspection.core.verdict import judge
from inspection.data.dataset import load_dataset
from inspection.training.train import evaluation_splits, train_model

TIMING_REPEATS = 3


def run(data: Path, product: str, kind: str, registry: Registry) -> dict[str, Any]:
    dataset = load_dataset(data / product)
    config = load_model_config(kind, product=product)
    outcome = train_model(config, dataset, product=product, registry=registry, progress=False)
    validation, _ = evaluation_splits(config, dataset)
    # the version's own calibration: its operating point on the validation split plus the
    # out-of-fold training scores, as training judged it and as its bundles start from
    calibration = outcome.record.calibration()
    test = outcome.predictions
    scores = normalize_scores(test.scores, calibration.normalization)
    maps = normalize_maps(test.maps, calibration.normalization)
    seg = calibration.segmentation

    def measure(judged: Any, rule: str) -> EvaluationMetrics:
        return compute_metrics(
            scores, test.labels, maps, test.gt_masks, test.defect_types, judged,
            image_threshold=0.5, segmentation=rule, mask_known=test.mask_known,
        )  # fmt: skip

    before = measure(threshold_masks(scores, maps, 0.5, 0.5), "global pixel threshold 0.500")
    after = measure(judge_all(scores, maps, 0.5, seg), seg.describe())
    times = []
    for _ in range(TIMING_REPEATS):
        for score, amap in zip(scores, maps, strict=True):
            started = time.perf_counter()
            judge(float(score), 0.5, amap, seg)
            times.append((time.perf_counter() - started) * 1000)
    return {
        "product": product,
        "model": kind,
        "load_1min_at_start": round(os.getloadavg()[0], 2),
        "validation_images": len(validation),
        "test_images": len(test.scores),
        "map_size": list(maps.shape[1:]),
        "segmentation": seg.describe(),
        "before": before.to_mapping(),
        "after": after.to_mapping(),
        "postprocess_ms": {
            "p50": round(float(np.percentile(times, 50)), 3),
            "p95": round(float(np.percentile(times, 95)), 3),
        },
    }


def markdown(rows: list[dict[str, Any]], load: float) -> str:
    lines = [
        "# Verdicts and regions: pooled global threshold (before) vs selected segmentation (after)",
        "",
        f"Same model outputs, one run per product and model; held-out test split; 1-min load at "
        f"start {load:.2f} (each row's own load in the second table). Verdicts at each "
        "model's own operating point (its recorded calibration). Region recall: share of "
        "ground-truth defects overlapped >= 30 % by the judged mask. `bench/verdicts.py`.",
        "",
        "| product | model | defect | pixel AUROC | pixel F1 before | after | region recall "
        "before | after | IoU after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        before, after = row["before"], row["after"]
        for name in [*sorted(after["per_defect"]), "overall"]:
            b = before["overall"] if name == "overall" else before["per_defect"][name]
            a = after["overall"] if name == "overall" else after["per_defect"][name]
            label = f"**{name}**" if name == "overall" else name
            lines.append(
                f"| {row['product']} | {row['model']} | {label} | {_f(a['pixel_auroc'])} | "
                f"{_f(b['pixel_f1'])} | {_f(a['pixel_f1'])} | {_f(b['region_recall'])} | "
                f"{_f(a['region_recall'])} | {_f(a['pixel_iou'])} |"
            )
    lines += [
        "",
        "| product | model | selected segmentation | NG without region before | after | "
        "false regions / good image before | after | false-reject | miss | "
        "post-proc p50 / p95 ms | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        b, a = row["before"]["overall"], row["after"]["overall"]
        ms = row["postprocess_ms"]
        lines.append(
            f"| {row['product']} | {row['model']} | {row['segmentation']} | "
            f"{b['ng_without_region']} | {a['ng_without_region']} | "
            f"{_f(b['false_regions_per_good_image'])} | "
            f"{_f(a['false_regions_per_good_image'])} | {_f(a['false_reject_rate'])} | "
            f"{_f(a['miss_rate'])} | {ms['p50']:.2f} / {ms['p95']:.2f} | "
            f"{row.get('load_1min_at_start', '–')} |"
        )
    lines += ["", *goal_lines(rows)]
    return "\n".join(lines) + "\n"


def goal_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Where region recall < 0.9 although the defect type's pixel AUROC >= 0.97."""
    misses = [
        f"{row['product']}/{row['model']}/{name} (pixel AUROC {d['pixel_auroc']:.3f}, "
        f"region recall {_f(d['region_recall'])})"
        for row in rows
        for name, d in sorted(row["after"]["per_defect"].items())
        if (d["pixel_auroc"] or 0) >= 0.97 and (d["region_recall"] or 0) < 0.9
    ]
    if not misses:
        return ["Goal (region recall >= 0.9 wherever pixel AUROC >= 0.97): met everywhere."]
    return [
        "Goal (region recall >= 0.9 wherever pixel AUROC >= 0.97) missed for: "
        + "; ".join(misses)
        + "."
    ]


def merged_rows(previous: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` plus the earlier report's rows for (product, model) pairs not in ``rows``.

    An earlier row without its own load gets the earlier report's load at start."""
    if not previous.is_file():
        return rows
    old = json.loads(previous.read_text(encoding="utf-8"))
    done = {(row["product"], row["model"]) for row in rows}
    kept = [
        {"load_1min_at_start": old.get("load_1min_at_start"), **row}
        for row in old.get("runs", [])
        if (row["product"], row["model"]) not in done
    ]
    order: dict[str, int] = {}
    for row in kept + rows:
        order.setdefault(row["product"], len(order))
    return sorted(kept + rows, key=lambda row: (order[row["product"]], row["model"]))


def _f(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("datasets"))
    parser.add_argument("--out", type=Path, default=Path("reports/verdicts"))
    parser.add_argument("--products", default="brick,grass,gravel,weave,tissue")
    parser.add_argument("--models", default="patchcore")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the rows of <out>/verdicts.json for (product, model) pairs not run now",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-verdicts-") as registry_dir:
        registry = Registry(registry_dir)
        for product in args.products.split(","):
            if not (args.data / product).is_dir():
                print(f"skipping {product}: no dataset at {args.data / product}")
                continue
            for kind in args.models.split(","):
                row = run(args.data, product, kind, registry)
                rows.append(row)
                a = row["after"]["overall"]
                print(
                    f"{product} {kind}: {row['segmentation']}; region recall "
                    f"{row['before']['overall']['region_recall']} -> {a['region_recall']}, "
                    f"pixel F1 {row['before']['overall']['pixel_f1']} -> {a['pixel_f1']}, "
                    f"post-proc p50 {row['postprocess_ms']['p50']} ms",
                    flush=True,
                )
    if args.merge:
        rows = merged_rows(args.out / "verdicts.json", rows)
    report = {
        "load_1min_at_start": round(load, 2),
        "machine": {"cpu": cpu_description(), "cores": os.cpu_count()},
        "runs": rows,
    }
    save_report(args.out, "verdicts", report, markdown(rows, load))
    print(f"wrote {args.out / 'verdicts.json'} and {args.out / 'verdicts.md'}")


if __name__ == "__main__":
    main()
