"""The Thresholds page's budget suggestion on stores with biased reviews, checked on held-out
good parts it did not see, over several seeds and store sizes (issue #41).

    heavy python bench/threshold_holdout.py [--sizes 100000 200000] [--seeds 4]

Each run seeds a site (``scripts/seed_dashboard.py``: reviewers labelled the oldest NG and
borderline parts, a biased sample, and every part of the 1-in-200 random audit sample), then
takes the page's suggestion exactly as ``bench/dashboard_scale.threshold_row`` does (the page's
default unbiased sample: the live bundle's held-out split + the audit sample, and
``thresholds.suggest_for_budget``) and counts the store's good parts outside the audit sample
(seeded truth: no mask) that the threshold rejects. Writes
``reports/statistics/thresholds_holdout.json`` and ``.md``.

SEEDED DATA: scores are drawn by the seed script (good parts Beta(2.2, 7)), not model output;
the bundle's held-out split is the same in every run (seeded by version), the store is not.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from _report import cpu_description, load_average, save_report
from dashboard_scale import threshold_row

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "scripts")]

from seed_dashboard import seed_site  # noqa: E402

from inspection.dashboard.context import open_dashboard  # noqa: E402

BUDGETS = (0.01, 0.05)
RULE = "confident"
"""The page's rule (``dashboard_scale.threshold_row`` also reports the marginal one)."""


def one_store(size: int, seed: int, reviews: int) -> list[dict[str, Any]]:
    """Seed a store of ``size`` results and check each budget's suggestion on it."""
    with tempfile.TemporaryDirectory(prefix="threshold-holdout-") as root:
        site = seed_site(
            root, inspections=size, reviews=reviews, audits=size, pictures_each=2, size=64,
            seed=seed,
        )  # fmt: skip
        board = open_dashboard(site)
        try:
            rows = [threshold_row(board, budget) for budget in BUDGETS]
        finally:
            board.store.engine.dispose()
    return [{"size": size, "seed": seed, "reviews": reviews, **row} for row in rows]


def _markdown(report: dict[str, Any]) -> str:
    runs = report["runs"]
    lines = [
        "# Thresholds page: budget suggestion vs held-out good parts, biased reviews",
        "",
        f"CPU {report['cpu']}; load before {report['load_before']}, after "
        f"{report['load_after']}. `python bench/threshold_holdout.py` (seeded data, see the "
        "script). Sample: the page's default (the bundle's held-out split + the random audit "
        "sample); reviewers also labelled the oldest NG/borderline parts, which the page's "
        "budget does not use. Held out: the store's good parts outside the audit sample.",
        "",
        "| results | seed | budget | good in sample | threshold | 95 % bound (page) | stated "
        "reject (95 % interval) | held-out good rejected | within interval | within budget | "
        "reviewed (biased) at the threshold |",
        "|---:|---:|---:|---:|---:|---|---|---|---|---|---:|",
    ]
    for run in runs:
        rule = run["rules"][RULE]
        low, high = rule["stated_interval_95"]
        lines.append(
            f"| {run['size']:,} | {run['seed']} | {run['budget']:.0%} | "
            f"{run['n_good_in_sample']:,} | {rule['threshold']:.4f} | {_bound(run)} | "
            f"{rule['stated_reject']:.2%} ({low:.2%}–{high:.2%}) | "
            f"{rule['held_out_rejected']:,} of {run['held_out_good']:,} = "
            f"{rule['held_out_reject_rate']:.2%} | {'yes' if rule['within_interval'] else 'NO'}"
            f" | {'yes' if rule['within_budget'] else 'NO'} | "
            f"{run['biased_reviewed_reject_rate_at_same_threshold']:.1%} |"
        )
    claimed = [r for r in runs if r["n_needed"] is None]  # the page says the budget holds
    inside = sum(r["rules"][RULE]["within_interval"] for r in runs)
    kept = sum(r["rules"][RULE]["within_budget"] for r in claimed)
    lines += [
        "",
        f"Held-out rate within the stated interval: {inside} of {len(runs)} runs. Where the "
        f"page had enough good parts to keep the budget at 95 % confidence: within the budget "
        f"{kept} of {len(claimed)}; elsewhere it says how many it needs and claims nothing.",
        "",
    ]
    return "\n".join(lines)


def _bound(run: dict[str, Any]) -> str:
    bound = f"{run['upper_bound_at_confidence']:.2%}"
    return bound if run["n_needed"] is None else f"{bound}, too few ({run['n_needed']} needed)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 200_000])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--reviews", type=int, default=2000, help="biased NG/borderline labels")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "statistics")
    args = parser.parse_args()
    report: dict[str, Any] = {"cpu": cpu_description(), "load_before": load_average()}
    report["runs"] = [
        row
        for size in args.sizes
        for seed in range(args.seeds)
        for row in one_store(size, seed, args.reviews)
    ]
    report["load_after"] = load_average()
    save_report(args.out, "thresholds_holdout", report, _markdown(report))
    print(_markdown(report))


if __name__ == "__main__":
    main()
