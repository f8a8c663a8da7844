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
from pathlib import Path

from _report import previous_report, save_report

from inspection.core.config import to_mapping
from inspection.data.dataset import load_dataset
from inspection.training.auto import search, write_search_report


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
        }
        save_report(args.out, "auto", rows)
        write_summary(args.out, rows)


def write_summary(out: Path, rows: dict) -> None:
    lines = [
        "# `train --auto` vs the default config",
        "",
        "Held-out test image AUROC with stratified bootstrap 95 % intervals; the winner is chosen",
        "on the validation split only (rule in each product's `reports/<product>/auto/search.md`).",
        "Produced by `/work/bin/bench python bench/auto_search.py`.",
        "",
        "| product | budget s | default test AUROC | winner | winner validation | winner test AUROC |"
        " done / skipped | load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for product, row in rows.items():
        candidates = row["candidates"]
        default, winner = candidates[0], next(c for c in candidates if c["name"] == row["winner"])
        done = sum(c["status"] == "done" for c in candidates)
        lines.append(
            f"| {product} | {row['budget_s']:.0f} | {_cell(default)} | {row['winner']} | "
            f"{winner['validation_auroc']:.3f} | {_cell(winner)} | {done} / "
            f"{len(candidates) - done} | {row['load_before']} |"
        )
    (out / "auto.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _cell(candidate: dict) -> str:
    test = candidate.get("test_auroc")
    if not test:
        return "-"
    return f"{test['value']:.3f} [{test['low']:.3f}, {test['high']:.3f}]"


if __name__ == "__main__":
    main()
