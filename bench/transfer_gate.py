"""The score transfer's residual gate on real bundles: each bundle's threshold and held-out
false rejects and misses under the rule before the gate and under the gate.

    python bench/transfer_gate.py --registry var/registry --data datasets --set demo \
        [--products brick,grass,gravel] [--out reports/statistics]

Per registered bundle that carries out-of-fold scores (no global context):

- before: the line fitted on every validation image both models scored (defects too) and the
  full-bank training images, its largest residual as a share of |threshold|, the carried
  scores used as they are (``core.operating_point.fit_transfer`` and ``choose_threshold`` on
  the carried + own good validation scores, as ``training.bundle_calibration`` did);
- after: ``training.bundle_calibration.calibrate_bundle`` itself (good pairs only, the share of
  the threshold's margin above the median good score, the carried scores raised by the
  residual above ``MAX_TRANSFER_RESIDUAL``).

Both thresholds are applied to the bundle's raw scores of the version's held-out test split.
Rows are keyed ``<set>/<product>/<bundle>``; rows already in ``<out>/transfer_gate.json``
are kept. Writes ``transfer_gate.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from _report import cpu_description, load_average, previous_report, save_report

from inspection.core.bundle import read_bundle_metadata
from inspection.core.fingerprint import relative_name
from inspection.core.operating_point import MAX_TRANSFER_RESIDUAL, choose_threshold, fit_transfer
from inspection.core.registry import Registry
from inspection.data.dataset import load_dataset
from inspection.training.bundle_calibration import calibrate_bundle
from inspection.training.export import ExportSplits, LabelledSample, run_bundle
from inspection.training.registry_export import export_splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--registry", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="folder of <product>/ datasets")
    parser.add_argument("--set", required=True, help="name of this registry's products")
    parser.add_argument("--products", default=None, help="comma-separated (default: all)")
    parser.add_argument("--out", type=Path, default=Path("reports/statistics"))
    args = parser.parse_args()
    report = previous_report(args.out, "transfer_gate")
    rows = report.setdefault("rows", {})
    registry = Registry(args.registry)
    for product in args.products.split(",") if args.products else registry.products():
        for bundle_id in registry.bundle_ids(product):
            key = f"{args.set}/{product}/{bundle_id}"
            row = _row(registry, product, bundle_id, args.data)
            if row is not None:
                rows[key] = {**row, "load": load_average()}
                print(key, row["after"], flush=True)
    report["cpu"] = cpu_description()
    save_report(args.out, "transfer_gate", report, _markdown(rows, report["cpu"]))


def _row(registry: Registry, product: str, bundle_id: str, data: Path) -> dict[str, Any] | None:
    bundle = registry.root / product / "bundles" / bundle_id
    meta = read_bundle_metadata(bundle)
    record = registry.version(product, meta.model_version.split("/")[-1])
    splits = export_splits(record, load_dataset(data / product))
    if meta.global_context is not None or not splits.good_scores.out_of_fold:
        return None
    run = _cached_run(bundle)
    after = calibrate_bundle(
        run, splits.validation, splits.operating_point, splits.good_scores, splits.dataset_root,
        roi=meta.roi is not None, make_sample=lambda path: LabelledSample(path, 0, "good"),
    ).operating  # fmt: skip
    before_threshold, before_share = _before(run, splits)
    test = run(splits.test)
    return {
        "precision": meta.precision,
        "local_statistics_fused": not splits.good_scores.validation_calibrates,
        "before": {"threshold": before_threshold, "residual_share": before_share,
                   **_held_out(test, before_threshold)},
        "after": {"threshold": after.threshold, "residual_share": after.transfer_residual,
                  "raise": after.transfer_raise, "bound": after.false_reject_bound,
                  **_held_out(test, after.threshold)},
    }  # fmt: skip


def _cached_run(bundle: Path):
    """``run_bundle`` on ``bundle`` whose outputs are kept per list of images (the rules and
    the test split share one inference of each)."""
    cache: dict[tuple[str, ...], Any] = {}

    def run(samples):
        key = tuple(str(s.path) for s in samples)
        if key not in cache:
            cache[key] = run_bundle(bundle, samples)
        return cache[key]

    return run


def _before(run, splits: ExportSplits) -> tuple[float, float]:
    """(threshold, residual share of |threshold|) by the rule before the gate."""
    good, root = splits.good_scores, splits.dataset_root
    own = run(splits.validation)
    source, target = [], []
    for sample, score in zip(splits.validation, own.scores, strict=True):
        if (name := relative_name(sample.path, root)) in good.validation:
            source.append(good.validation[name])
            target.append(float(score))
    names = sorted(good.train_full_bank)
    bank = run([LabelledSample(root / n, 0, "good") for n in names])
    source += [good.train_full_bank[n] for n in names]
    target += [float(v) for v in bank.scores]
    transfer = fit_transfer(np.asarray(source), np.asarray(target))
    carried = transfer.apply(np.asarray(list(good.out_of_fold.values())))
    own_good = own.scores[own.labels == 0] if good.validation_calibrates else np.empty(0)
    threshold = choose_threshold(np.r_[carried, own_good], splits.operating_point).threshold
    return threshold, transfer.max_residual / abs(threshold)


def _held_out(test: Any, threshold: float) -> dict[str, int]:
    good, bad = test.scores[test.labels == 0], test.scores[test.labels == 1]
    return {"false_rejects": int((good >= threshold).sum()), "n_good": int(good.size),
            "misses": int((bad < threshold).sum()), "n_defective": int(bad.size)}  # fmt: skip


def _markdown(rows: dict[str, Any], cpu: str) -> str:
    lines = [
        "# Score transfer: the residual gate on real bundles",
        "",
        "Written by `bench/transfer_gate.py`. Before: the carrying line fitted on all paired "
        "images, its largest residual as a share of |threshold|, the carried out-of-fold scores "
        "used as they are. After (`training.bundle_calibration`): the line on good pairs, its "
        "largest residual as a share of the threshold's margin above the median good score; "
        f"above {MAX_TRANSFER_RESIDUAL:.0%} every carried score is raised by the residual "
        "before the threshold is set. Held-out: the version's test split, never used to "
        "calibrate. Sets: `demo` (make demo's brick, grass, gravel), `evaluation` (weave, "
        "tissue, part, as bench/_product_ab.py generates them: tuned on by nothing).",
        "",
        "| set / product / bundle | residual before (of abs thr) | after (of margin) "
        "| rule after | threshold before -> after | held-out false rejects before -> after "
        "| misses before -> after |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, row in sorted(rows.items()):
        before, after = row["before"], row["after"]
        rule = "as they are" if after["raise"] is None else f"raised by {after['raise']:.3g}"
        lines.append(
            f"| {key}{' (local statistics)' if row['local_statistics_fused'] else ''} "
            f"| {before['residual_share']:.1%} | {after['residual_share']:.1%} | {rule} "
            f"| {before['threshold']:.4g} -> {after['threshold']:.4g} "
            f"| {before['false_rejects']} -> {after['false_rejects']} of {after['n_good']} "
            f"| {before['misses']} -> {after['misses']} of {after['n_defective']} |"
        )
    lines += ["", f"CPU: {cpu}; load (1, 5, 15 min) per row in the JSON.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
