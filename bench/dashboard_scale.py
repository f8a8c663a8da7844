"""Time the dashboard's queries on a large store: seeds N inspections into a temp SQLite site.

    python bench/dashboard_scale.py --inspections 100000

Writes ``reports/dashboard/scale.json`` and ``reports/dashboard/summary.md``. Each page's work
is what one (uncached) script run does: the SQL aggregations and the functions around them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

from _report import save_report

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "scripts")]

import seed_dashboard  # noqa: E402

from inspection.dashboard import models as model_views  # noqa: E402
from inspection.dashboard import overview, retraining, review, thresholds  # noqa: E402
from inspection.dashboard.context import open_dashboard  # noqa: E402
from inspection.store import queries  # noqa: E402

BUDGET_S = 1.0  # a page's uncached queries should finish well within a second


def _time(fn: Callable[[], object], repeats: int) -> dict[str, float]:
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return {"median_s": statistics.median(runs), "max_s": max(runs)}


def page_workloads(site: Path) -> dict[str, Callable[[], object]]:
    """What each page computes on one uncached run (default filters)."""
    board = open_dashboard(site)
    store, registry = board.store, board.registry
    now = datetime.now(timezone.utc)
    week = now - timedelta(days=7)

    def overview_page() -> None:
        frame = overview.volume_frame(store, period="day", since=week)
        overview.per_product(frame)
        overview.station_frame(store, since=week, now=now)
        for product in board.products:
            overview.drift(store, registry, product, since=week)

    def thresholds_page() -> None:
        bundle = thresholds.default_bundle(registry, "brick")
        data = thresholds.combine(
            [
                thresholds.validation_scores(registry, "brick", bundle),
                thresholds.reviewed_scores(store, "brick"),
            ],
            "both",
        )
        thresholds.roc_curve(data), thresholds.pr_curve(data)
        thresholds.suggest_max_f1(data), thresholds.suggest_for_miss_rate(data, 0.01)
        histogram = queries.score_histogram(store, "brick", since=week)
        thresholds.expected_ng(
            histogram, 0.5, queries.daily_volume(store, "brick", since=week, until=now)
        )

    def review_page(page: int) -> Callable[[], None]:
        def run() -> None:
            result = review.queue_page(store, queries.QueueQuery(), page=page, page_size=20)
            review.load_views(store, result.rows[0])
            review.audit_frame(store, result.rows[0].id)
            queries.defect_types(store)

        return run

    def models_page() -> None:
        model_views.bundle_table(registry, "brick")
        model_views.precision_comparison(registry, "brick", "v0002")
        model_views.events_frame(registry, "brick")

    def retraining_page() -> None:
        for product in board.products:
            retraining.retrain_runs(registry, board.site.reports_dir, product)

    return {
        "overview": overview_page,
        "thresholds": thresholds_page,
        "review (page 1)": review_page(0),
        "review (page 200)": review_page(199),
        "models": models_page,
        "retraining": retraining_page,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inspections", type=int, default=100_000)
    parser.add_argument("--reviews", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "dashboard")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dashboard-scale-") as tmp:
        start = time.perf_counter()
        site = seed_dashboard.seed_site(
            Path(tmp), inspections=args.inspections, reviews=args.reviews, pictures_each=4
        )
        seed_s = time.perf_counter() - start
        pages = {name: _time(fn, args.repeats) for name, fn in page_workloads(site).items()}
    result = {
        "inspections": args.inspections,
        "reviews": args.reviews,
        "backend": "sqlite",
        "repeats": args.repeats,
        "seed_s": round(seed_s, 2),
        "budget_s": BUDGET_S,
        "pages": {k: {m: round(v, 4) for m, v in t.items()} for k, t in pages.items()},
        "within_budget": all(t["median_s"] <= BUDGET_S for t in pages.values()),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
        },
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    save_report(args.out, "scale", result)
    print(json.dumps(result["pages"], indent=2))
    print(f"seeded {args.inspections} in {seed_s:.1f} s; within budget: {result['within_budget']}")


if __name__ == "__main__":
    main()
