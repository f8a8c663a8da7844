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

from pathlib import Path
from typing import Any

from _product_ab import ABBench, ab_main


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


def _choice(record: Any) -> dict[str, Any]:
    return {"local_statistics": record.extra.get("local_statistics")}


BENCH = ABBench(
    out=Path("reports/local_stats"),
    registry=Path("var/local_stats/registry"),
    roles={"default": ("local_statistics=false",), "auto": ("local_statistics=auto",)},
    header=_header(),
    record_extra=_choice,
    column=("kept? (validation AUROC, PatchCore -> fused)", _kept),
    per_kind_plot=False,
)


def main() -> None:
    ab_main(__doc__, BENCH)


if __name__ == "__main__":
    main()
