"""Flipped and rotated training views in PatchCore's memory bank, through the product path.

    /work/bin/heavy python bench/bank_augment.py run [--products grass,gravel,weave,tissue,part,brick]
    /work/bin/bench python bench/bank_augment.py latency
    python bench/bank_augment.py report

Two roles per product, each on the product's PatchCore config (``local_statistics: auto``,
``image_score: map_peak``, ``image_score_blur: auto``): ``as-is`` (the training images as they
are) and ``views`` (``bank_augment: [hflip, vflip, rot90]``: each training image's mirrored and
turned views join the patches the coreset is chosen from, ``training.augment``). Trained and
exported as ``inspection train`` / ``export`` do (``_product_ab``); the figures are the FP32
bundles' own at their own 1 % operating point on the held-out split.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from _product_ab import (
    bench_main,
    comparison_table,
    kinds_section,
    machine_section,
    plot_kinds,
    plot_roles,
    run_roles,
    time_bundles,
)
from _report import previous_report

OUT = Path("reports/bank_augment")
ROLES = {"as-is": ("bank_augment=[]",), "views": ("bank_augment=[hflip,vflip,rot90]",)}
HEADER = [
    "# Flipped and rotated training views in PatchCore's memory bank, through the product path",
    "",
    "Produced by `bench/bank_augment.py` (`run` under `/work/bin/heavy`, `latency` under",
    "`/work/bin/bench`, `report`). Every figure is an exported FP32 bundle's own, on the",
    "held-out test split, at the bundle's own operating point (1 % false-reject budget).",
    "`as-is`: the bank from the training images as they are; `views`: each training image's",
    "horizontal and vertical mirror and 90-degree turn join the patches the coreset is chosen",
    "from (the coreset keeps 1 % of them, so the bank holds 4x the rows). Both on the product's",
    "PatchCore config. The lever was found on validation *and* test maps of grass, gravel, weave",
    "and tissue (a study before this bench, with the augmentation done on disk); `part` and",
    "`brick` were looked at once before it was built. Intervals: stratified bootstrap, 2000",
    "resamples; gains are paired. `fit s` is the training epoch alone.",
    "",
]


def run(args: argparse.Namespace) -> None:
    """Train and export both roles per product; one JSON row per (product, role)."""

    def extra(record: Any) -> dict[str, Any]:
        return {
            "image_score": record.extra.get("image_score"),
            "local_statistics_kept": bool((record.extra.get("local_statistics") or {}).get("kept")),
        }

    run_roles(args, ROLES, extra)


def latency(args: argparse.Namespace) -> None:
    """p50 of ``Inspector.inspect`` for every bundle of ``run`` (``_product_ab.time_bundles``)."""
    time_bundles(args)


def report(args: argparse.Namespace) -> None:
    """``summary.md``, ``frr_auroc.png`` and ``per_kind.png`` from the JSON files."""
    results = previous_report(args.out, "results")
    latency_report = previous_report(args.out, "latency")
    lines = [
        *HEADER,
        *comparison_table(results, latency_report, tuple(ROLES), ("bank rows", _rows)),
        "",
        *kinds_section(results),
        "",
        *machine_section(results, latency_report),
    ]
    (args.out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    plot_roles(args.out / "frr_auroc.png", results, tuple(ROLES))
    plot_kinds(args.out / "per_kind.png", results, tuple(ROLES))


def _rows(row: dict) -> str:
    return str(row.get("bank", "-"))


def main() -> None:
    bench_main(__doc__, OUT, Path("var/bank_augment/registry"), {
        "run": run, "latency": latency, "report": report})  # fmt: skip


if __name__ == "__main__":
    main()
