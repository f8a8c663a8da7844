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
from pathlib import Path

from _product_ab import (
    bench_main,
    comparison_table,
    kinds_section,
    machine_section,
    plot_roles,
    run_roles,
    time_bundles,
)
from _report import previous_report

OUT = Path("reports/local_stats")
ROLES = {"default": ("local_statistics=false",), "auto": ("local_statistics=auto",)}


def run(args: argparse.Namespace) -> None:
    """Train and export both roles per product; one JSON row per (product, role)."""
    run_roles(args, ROLES, lambda record: {
        "local_statistics": record.extra.get("local_statistics")})  # fmt: skip


def latency(args: argparse.Namespace) -> None:
    """p50 of ``Inspector.inspect`` for every bundle of ``run`` (``_product_ab.time_bundles``)."""
    time_bundles(args)


def report(args: argparse.Namespace) -> None:
    """``summary.md`` and ``frr_auroc.png`` from ``results.json`` and ``latency.json``."""
    results = previous_report(args.out, "results")
    latency_report = previous_report(args.out, "latency")
    choice = ("kept? (validation AUROC, PatchCore -> fused)", _kept)
    lines = [
        *_header(),
        *comparison_table(results, latency_report, tuple(ROLES), choice),
        "",
        *kinds_section(results),
        "",
        *machine_section(results, latency_report),
    ]
    (args.out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    plot_roles(args.out / "frr_auroc.png", results, ("default", "auto"))


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


def _kept(row: dict) -> str:
    choice = row.get("local_statistics")
    if not choice:
        return "-"
    evidence = choice.get("validation_auroc") or {}
    shown = f"image {evidence.get('patchcore', '?')} -> {evidence.get('fused', '?')}"
    if "pixel_fused" in evidence:
        shown += f", pixel {evidence['pixel_patchcore']} -> {evidence['pixel_fused']}"
    return f"{'yes' if choice['kept'] else 'no'} ({shown})"


def main() -> None:
    bench_main(
        __doc__,
        OUT,
        Path("var/local_stats/registry"),
        {"run": run, "latency": latency, "report": report},
    )


if __name__ == "__main__":
    main()
