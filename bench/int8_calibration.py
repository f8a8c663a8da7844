"""INT8 against FP32 under NNCF calibration variants: how many calibration images and which
bias correction, on one registered version (a demo product or a real-data split).

    python bench/int8_calibration.py --site /tmp/site/configs/site.yaml --export brick=v0003
        [--variant subset64 --variant subset30 --variant subset64-nobias ...]
        [--label demo] [--out reports/runtime]

The version is converted once and exported to FP32 once (calibrated, measured: the reference
every INT8 variant is gated against, as ``export_gated`` does); then each variant quantises the
same FP32 graph and exports an INT8 bundle (``training.export.export_model``) into a scratch
folder, never the registry. A variant is ``subset<N>`` (``ExportOptions.calibration_size``)
with an optional ``-nobias`` (NNCF ``AdvancedQuantizationParameters.disable_bias_correction``)
or ``-fullbias`` (``fast_bias_correction=False``: NNCF's slower bias correction). Per variant:
the seconds NNCF's ``quantize`` took, the gate's verdict, image AUROC, misses and false rejects
at the bundle's own certified threshold, its region recall, pixel F1, AUPRO and chosen
segmentation, and how its test scores agree with FP32's (Spearman
rank correlation, largest difference of normalised scores, test images judged otherwise).
Rows append to ``<out>/int8_calibration.json``; the markdown is written by hand from it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from _report import REPO, cpu_description, load_average, previous_report, save_report
from scipy.stats import spearmanr

from inspection.core.config import load_site_config
from inspection.core.registry import Registry
from inspection.refine.config import refine_config_in
from inspection.runtime.hardware import forced_isa
from inspection.training.export import ExportOptions, ExportResult, export_model
from inspection.training.quantize import import_nncf
from inspection.training.registry_export import (
    RegistryExport,
    base_metadata,
    context_files,
    convert_registered,
    with_part_setup,
)

STEM = "int8_calibration"


def nncf_with(variant: str) -> Callable[[], None]:
    """Make ``nncf.quantize`` run ``variant``'s bias correction and time itself; returns the
    undo. ``seconds`` of the last call land in ``nncf_with.last``."""
    nncf = import_nncf()
    original = nncf.quantize

    def quantize(*args: Any, **kwargs: Any) -> Any:
        if variant.endswith("-nobias"):
            advanced = kwargs["advanced_parameters"]
            kwargs["advanced_parameters"] = replace(advanced, disable_bias_correction=True)
        if variant.endswith("-fullbias"):
            kwargs["fast_bias_correction"] = False
        start = time.perf_counter()
        model = original(*args, **kwargs)
        nncf_with.last = time.perf_counter() - start  # type: ignore[attr-defined]
        return model

    nncf.quantize = quantize

    def undo() -> None:
        nncf.quantize = original

    return undo


def scores_of(result: ExportResult) -> np.ndarray:
    """The bundle's normalised test scores (threshold at 0.5), as ``validation_scores.json``."""
    recorded = json.loads((result.bundle_dir / "validation_scores.json").read_text())
    return np.asarray(recorded["scores"], dtype=np.float64)


def figures(result: ExportResult) -> dict[str, Any]:
    """Image AUROC, misses and false rejects at the bundle's own threshold, its region and
    pixel figures and the segmentation its calibration chose."""
    metrics, measured = result.measured  # type: ignore[misc]
    return {
        "image_auroc": metrics.image_auroc,
        "missed": round(measured.miss_rate * measured.n_defective),
        "n_defective": measured.n_defective,
        "rejected_good": measured.rejected_good(),
        "n_good": measured.n_good,
        "threshold_raw": result.metadata.normalization.image_threshold_raw,
        "region_recall": measured.region_recall,
        "pixel_f1": measured.pixel_f1,
        "aupro": measured.aupro,
        "segmentation": result.metadata.segmentation_rule.describe(),
    }


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    site = load_site_config(args.site)
    registry = Registry(site.registry_dir)
    product, version = args.export.split("=", 1)
    source = RegistryExport(version=version, configs_dir=site.configs)
    converted = convert_registered(registry, product, source)
    record = registry.bundles.version(product, version)
    options = ExportOptions(refine=refine_config_in(site.configs))
    rows = []
    with tempfile.TemporaryDirectory(prefix="int8-calibration-") as scratch:

        def export(precision: str, name: str, **changes: Any) -> ExportResult:
            base, parts = with_part_setup(base_metadata(record, precision), site.configs)
            return export_model(
                None, Path(scratch) / name, base=base, splits=converted.splits,
                options=replace(options, precision=precision, **changes),
                extra_files=context_files(record) | parts, reference=reference,
                converted=converted,
            )  # fmt: skip

        reference = None
        fp32 = export("fp32", "fp32")
        reference, fp32_scores = fp32.measured, scores_of(fp32)
        for variant in args.variant:
            size = int(variant.removeprefix("subset").split("-")[0])
            undo = nncf_with(variant)
            load = load_average()
            try:
                int8 = export("int8", variant, force=True, calibration_size=size)
            finally:
                undo()
            scores = scores_of(int8)
            rows.append({
                "label": args.label, "product": product, "version": version,
                "variant": variant, "quantize_s": round(nncf_with.last, 2),  # type: ignore[attr-defined]
                "gate_passed": int8.gate.passed, "gate_failures": list(int8.gate.failures),
                "int8": figures(int8), "fp32": figures(fp32),
                "spearman": round(float(spearmanr(scores, fp32_scores).statistic), 5),
                "max_score_diff": round(float(np.max(np.abs(scores - fp32_scores))), 4),
                "judged_otherwise": int(np.sum((scores >= 0.5) != (fp32_scores >= 0.5))),
                "n_test": len(scores), "load_before": load, "load_after": load_average(),
            })  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", type=Path, required=True, help="the site's site.yaml")
    parser.add_argument("--export", required=True, metavar="PRODUCT=VERSION")
    parser.add_argument("--variant", action="append", required=True)
    parser.add_argument("--label", default="today")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "runtime")
    args = parser.parse_args(argv)
    rows = run(args)
    report = previous_report(args.out, STEM) or {"rows": []}
    isa = forced_isa()
    for row in rows:
        report["rows"].append({**row, "cpu": cpu_description(), "isa_env": isa})
    save_report(args.out, STEM, report)


if __name__ == "__main__":
    main()
