"""Export time of a high-resolution product, with the refiner choice's share.

    python bench/hires_export.py [--data datasets/plate] [--out reports/hires] [--native]

Trains the product config's PatchCore (256 px, whole image) into a throw-away registry, then
exports it as an FP32 bundle through the normal export
(calibration, the per-bundle mask-refiner choice within its pixel budget, the test measurement)
and times each stage from the export's progress lines. ``--native`` also times the refiner
choice at full resolution on the same bundle (``max_side=None``: how every export chose before
the budget; over ten minutes at 2048 px). Writes ``<out>/export.json`` and ``<out>/export.md``.
Run through ``/work/bin/heavy``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from _report import load_average, save_report

from inspection.core.registry import Registry
from inspection.data.dataset import load_dataset
from inspection.refine.config import load_refine_config
from inspection.refine.select import CHOICE_MAX_SIDE, choose_refiner
from inspection.runtime.inspector import Inspector
from inspection.training.config import load_model_config
from inspection.training.export import ExportOptions
from inspection.training.registry_export import RegistryExport, export_bundle, export_splits
from inspection.training.train import train


class StageClock:
    """Progress callback that stamps each export progress line."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.lines: list[tuple[float, str]] = []

    def __call__(self, message: str) -> None:
        elapsed = time.perf_counter() - self.start
        self.lines.append((elapsed, message))
        print(f"[{elapsed:7.1f} s] {message}", flush=True)

    def stages(self, end: float) -> list[dict[str, Any]]:
        """Each progress line with the seconds until the next one (or ``end``)."""
        stamps = [t for t, _ in self.lines] + [end]
        return [
            {"stage": message, "seconds": round(stamps[i + 1] - t, 1)}
            for i, (t, message) in enumerate(self.lines)
        ]


def run(args: argparse.Namespace) -> dict[str, Any]:
    dataset = load_dataset(args.data)
    product = dataset.name
    registry = Registry(Path(tempfile.mkdtemp(prefix="bench-hires-export-")))
    started = time.perf_counter()
    config = load_model_config("patchcore", product=product)
    version = train(config, dataset, product=product, registry=registry, progress=False).version
    fit_seconds = round(time.perf_counter() - started, 1)
    clock = StageClock()
    options = ExportOptions(precision="fp32", force=True)
    result = export_bundle(
        registry, product, options, RegistryExport(version=version, dataset_path=args.data),
        progress=clock,
    )  # fmt: skip
    export_seconds = time.perf_counter() - clock.start
    choice = result.metadata.refinement
    report: dict[str, Any] = {
        "product": product,
        "version": version,
        "fit_seconds": fit_seconds,
        "export_seconds": round(export_seconds, 1),
        "stages": clock.stages(export_seconds),
        "choice_max_side": CHOICE_MAX_SIDE,
        "choice": choice.describe() if choice else None,
        "native_choice": None,
    }
    if args.native:
        splits = export_splits(registry.version(product, version), dataset)
        started = time.perf_counter()
        native, _ = choose_refiner(
            Inspector.from_bundle(result.bundle_dir), splits.validation,
            config=load_refine_config(), max_side=None,
        )  # fmt: skip
        report["native_choice"] = {
            "seconds": round(time.perf_counter() - started, 1),
            "choice": native.describe(),
        }
    report["load_end"] = [round(x, 2) for x in os.getloadavg()]
    return report


def markdown(report: dict[str, Any], load_before: str) -> str:
    lines = [
        f"# Export time: {report['product']} (FP32, PatchCore 256 px, version {report['version']})",
        "",
        "Written by `python bench/hires_export.py` (through `/work/bin/heavy`), load before "
        f"{load_before}, after {report['load_end']}. The mask-refiner choice is measured within "
        f"its pixel budget (longer side <= {report['choice_max_side']} px, `refine.budget`).",
        "",
        f"Export total: **{report['export_seconds']} s**.",
        "",
        "| stage (progress line) | s |",
        "|---|---:|",
    ]
    lines += [f"| {s['stage']} | {s['seconds']} |" for s in report["stages"]]
    lines += ["", f"Choice: {report['choice']}"]
    native = report["native_choice"]
    if native:
        lines += [
            "",
            f"The same choice at full resolution (before the budget): {native['seconds']} s; "
            f"{native['choice']}",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("datasets/plate"))
    parser.add_argument("--out", type=Path, default=Path("reports/hires"))
    parser.add_argument("--native", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load_before = load_average()
    report = run(args)
    report["load_start"] = load_before
    text = markdown(report, load_before)
    save_report(args.out, "export", report, text)
    print(text)


if __name__ == "__main__":
    main()
