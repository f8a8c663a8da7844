"""``train --auto`` vs the default config on the demo products, held-out test with intervals.

    python bench/auto_search.py [--data datasets] [--products grass,gravel] [--budget 240]

Per product: ``inspection.training.auto.search`` within the budget (validation split only
chooses); every candidate's held-out test image AUROC carries a stratified bootstrap 95 %
interval. The default config is the grid's first candidate, so "default" and "auto" come from
the same run on the same split. Writes ``reports/<product>/auto/search.{json,md,png}`` and
``<out>/auto.json`` + ``auto.md``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from _report import previous_report, save_report

from inspection.core.config import to_mapping
from inspection.data.dataset import load_dataset
from inspection.training.auto import TIE_MARGIN, interval_cell, search, write_search_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("datasets"))
    parser.add_argument("--reports", type=Path, default=Path("reports"))
    parser.add_argument("--out", type=Path, default=Path("reports/global"))
    parser.add_argument("--products", default="grass,gravel")
    parser.add_argument("--budget", type=float, default=240.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("lightning", "lightning_fabric", "nncf", "anomalib"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows = previous_report(args.out, "auto")
    for product in args.products.split(","):
        load = round(os.getloadavg()[0], 2)
        result = search(product, load_dataset(args.data / product), budget_s=args.budget)
        write_search_report(args.reports / product / "auto", result)
        rows[product] = {
            **to_mapping(result),
            "load_before": load,
            "load_after": round(os.getloadavg()[0], 2),
            "cpu": _cpu(),
            "command": " ".join(sys.argv),
        }
        save_report(args.out, "auto", rows)
        write_summary(args.out, rows)


def write_summary(out: Path, rows: dict) -> None:
    lines = [
        "# `train --auto` vs the default config",
        "",
        "Held-out test image AUROC with stratified bootstrap 95 % intervals; the winner is chosen",
        "on the validation split only (rule in each product's `reports/<product>/auto/search.md`).",
        "Produced by `python bench/auto_search.py` (its command line, CPU and load in `auto.json`).",
        "",
        "`validation leader`: the highest validation AUROC (ties within 0.01 to the earliest);",
        "it replaces the default only if its paired bootstrap gain over the default on the same",
        "validation images is above 0 at 95 %.",
        "",
        "| product | budget s | default validation | default test AUROC | validation leader | "
        "leader validation | leader gain over default [paired 95 % CI] | leader test AUROC | "
        "winner | done / skipped | load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for product, row in rows.items():
        candidates = row["candidates"]
        default, leader = candidates[0], _leader(candidates)
        done = sum(c["status"] == "done" for c in candidates)
        lines.append(
            f"| {product} | {row['budget_s']:.0f} | {default['validation_auroc']:.3f} | "
            f"{_cell(default)} | {leader['name']} | {leader['validation_auroc']:.3f} | "
            f"{interval_cell(leader.get('validation_gain'), signed=True)} | {_cell(leader)} | "
            f"**{row['winner']}** | {done} / {len(candidates) - done} | {row['load_before']} |"
        )
    (out / "auto.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _cell(candidate: dict) -> str:
    return interval_cell(candidate.get("test_auroc"))


def _cpu() -> str:
    """The CPU model and its vector ISA flags of note (``/proc/cpuinfo``)."""
    info = Path("/proc/cpuinfo")
    text = info.read_text(encoding="utf-8") if info.exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                  if line.startswith("model name")), "unknown")  # fmt: skip
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])  # fmt: skip
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in flags]
    return f"{model} x{os.cpu_count()} ({', '.join(isa)})"


def _leader(candidates: list[dict]) -> dict:
    """The validation leader (the rule without its noise guard): best, ties to the earliest."""
    done = [c for c in candidates if c["status"] == "done"]
    best = max(c["validation_auroc"] for c in done)
    return next(c for c in done if c["validation_auroc"] >= best - TIE_MARGIN)


if __name__ == "__main__":
    main()
