"""Time every dashboard page on a large store (issue #41).

    python scripts/seed_dashboard.py /tmp/site5m --inspections 5000000 --reviews 3000 \
        --audits 3000 [--store-url postgresql+psycopg://...]
    heavy --alone python bench/dashboard_scale.py --site /tmp/site5m/site.yaml --browser

Writes ``reports/dashboard/scale_<backend>.json`` and ``.md``:

- *python*: each page's store reads and the functions around them, uncached, median of
  ``--repeats``;
- *browser* (``--browser``; ``--only-browser`` keeps the report's other rows): headless Chromium
  signs in and opens each page through the sidebar, ``--walks`` times against a fresh server,
  timed from the action to the paint after the page's last DOM mutation
  (``dashboard_walk.DRAWN_JS``); then the queue's *Next page*, *Go to page* ``DEEP_PAGE`` and
  *Next page* from there, Overview and Thresholds once their cached reads expired, and Overview
  reopened (a new session its cookie signs in);
- *plans* (``plans_<backend>.json``): each page query's ``EXPLAIN QUERY PLAN`` (SQLite) or
  ``EXPLAIN (ANALYZE, BUFFERS)`` (PostgreSQL);
- *thresholds*: the budget suggestion on the page's unbiased sample (held-out split + random
  audit sample) against the reject rate on the store's held-out good parts (seeded truth: a
  defect has a mask).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any

from _report import load_average, previous_report, recorded, save_report, seconds, table

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "scripts")]

from sqlalchemy import func, select  # noqa: E402

from inspection.dashboard import health, overview, retraining, review, thresholds  # noqa: E402
from inspection.dashboard import models as model_views  # noqa: E402
from inspection.dashboard.context import open_dashboard  # noqa: E402
from inspection.store import queries  # noqa: E402
from inspection.store.models import Inspection  # noqa: E402

BUDGET_S = 1.5
PRODUCT = "brick"
DEEP_PAGE = 1000
PLANNED = ("Overview", "Thresholds", "Review queue page 1", f"Review queue: go to page {DEEP_PAGE}")
"""The workloads whose queries ``plans`` explains (and every blob check)."""


def workloads(board) -> dict[str, Callable[[], object]]:
    """What each page computes on one uncached run (default filters)."""
    store, registry = board.store, board.registry
    now = datetime.now(timezone.utc)
    week = now - timedelta(days=7)
    query = queries.QueueQuery()
    deep = review.page_start(store, query, DEEP_PAGE - 1, 20)
    sha = store.list_inspections(limit=1)[0]

    def overview_page() -> None:
        frame = overview.volume_frame(store, period="day", since=week)
        overview.kpis(frame, overview.volume_frame(store, period="hour", since=week))
        overview.per_product(frame)
        overview.station_frame(store, since=week, now=now)
        queries.distinct_values(store, "station_id")
        for product in board.products:
            overview.drift(store, registry, product, since=week)
            health.model_health(registry, product)

    def thresholds_page() -> None:
        unbiased = unbiased_sample(board)
        thresholds.reviewed_scores(store, PRODUCT)
        thresholds.roc_curve(unbiased), thresholds.pr_curve(unbiased)
        thresholds.suggest_max_f1(unbiased), thresholds.suggest_for_miss_rate(unbiased, 0.01)
        thresholds.suggest_for_budget(audit_sample(board), 0.01)
        histogram = queries.score_histogram(store, PRODUCT, since=week)
        thresholds.expected_ng(
            histogram, 0.5, queries.daily_volume(store, PRODUCT, since=week, until=now)
        )

    def review_page(after: queries.QueueCursor | None) -> Callable[[], None]:
        def run() -> None:
            page = review.queue_page(store, query, page_size=20, after=after)
            review.load_views(store, page.rows[0])
            review.audit_frame(store, page.rows[0].id)
            queries.defect_types(store)

        return run

    def blob_check() -> None:
        assert store.station_has_blob(sha.station_id, sha.image_sha)
        assert not store.station_has_blob(sha.station_id, "f" * 64)

    return {
        "Overview": overview_page,
        "Thresholds": thresholds_page,
        "Review queue page 1": review_page(None),
        f"Review queue page {DEEP_PAGE}": review_page(deep),
        f"Review queue: go to page {DEEP_PAGE}": lambda: review_page(
            review.page_start(store, query, DEEP_PAGE - 1, 20)
        )(),
        "Models": lambda: (
            model_views.bundle_table(registry, PRODUCT),
            model_views.events_frame(registry, PRODUCT),
            health.model_health(registry, PRODUCT),
        ),
        "Defect kinds": lambda: health.outcomes(registry, PRODUCT, board.site.datasets_dir),
        "Retraining": lambda: [
            retraining.retrain_runs(registry, board.site.reports_dir, p) for p in board.products
        ],
        "GET /v1/blobs (station_has_blob, hit + miss)": blob_check,
    }


# ------------------------------------------------------------------------------ query plans
def plans(board) -> dict[str, list[str]]:
    """The database's plan of each query a page runs (captured from SQLAlchemy's log)."""
    from sqlalchemy import event

    store = board.store
    captured: list[tuple[str, Any]] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            captured.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        for name, work in workloads(board).items():
            if name in PLANNED or "blob" in name:
                work()
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    result: dict[str, list[str]] = {}
    sqlite = store.engine.dialect.name == "sqlite"
    with store.engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        for statement, parameters in captured:
            key = " ".join(statement.split())[:4000]
            if key in result:
                continue
            cursor = raw.cursor()
            cursor.execute(  # PostgreSQL's run too: rows, heap fetches, buffers read
                ("EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN (ANALYZE, BUFFERS) ") + statement,
                parameters,
            )
            rows = cursor.fetchall()
            result[key] = [str(row[-1] if sqlite else row[0]) for row in rows]
            cursor.close()
    return result


# ---------------------------------------------------------------------------------- browser
DATA_TTL_S = 15  # inspection.dashboard.app_state.DATA_TTL_S (not imported: it needs streamlit)
AGAIN = ("Overview", "Thresholds")
AGAIN_NOTE = "(visited again, cache expired)"
RELOAD = "Overview (opened again in the browser: a new session its cookie signs in)"
SIGN_IN = "Overview (Chromium: sign-in + first visit)"
PAGES = (
    "Thresholds",
    "Review queue",
    "Models",
    "Defect kinds",
    "Retraining",
    "Regions of interest",
)


class Walk:
    """Times steps in Chromium, on the page's own clock: seconds from the click or Enter to the
    page's last change (``dashboard_walk.settle``), and of them the part until the server's last
    message arrived (its script run finished), the bytes it sent and the browser's long tasks in
    between."""

    def __init__(self, driver) -> None:
        self.driver, self.steps = driver, {}  # walk.browser() watches

    def step(self, name: str, action: Callable[[], float], acted_after: float = 0) -> None:
        """``action()`` acts and waits for the page to settle; ``acted_after``: the wall time
        after which the page's action was, when before the step's (the sign-in's Enter)."""
        wall = time.time()
        action()
        drawn = self.driver.execute_script("return window.__drawn") or {}
        arrived = drawn.get("messages", [])
        origin = max(drawn.get("action", 0) / 1000, acted_after or wall - 0.05)
        end_wall = max(drawn["changed"], drawn["drawn"]) / 1000
        seconds = end_wall - origin
        mine = [(t, size) for t, size in arrived if origin <= t <= end_wall + 0.05]
        busy = sum(
            max(0.0, min(begin + ms, end_wall * 1000) - max(begin, origin * 1000))
            for begin, ms in drawn.get("long", [])
        )
        self.steps[name] = self.steps.get(name, {}) | {
            "s": round(seconds, 3),
            "last_message_s": round(max((t for t, _ in mine), default=origin) - origin, 3),
            "kb": round(sum(size for _, size in mine) / 1024, 1),
            "long_tasks_s": round(busy / 1000, 3),
        }
        print(f"  {name}: {self.steps[name]}", flush=True)


def browser_times(site: Path, user: str, password: str) -> dict[str, dict[str, Any]]:
    """Per step, in headless Chromium against this checkout's app: seconds from the action to
    the page's last change (``Walk``), the server's last message, bytes."""
    import dashboard_walk as walk

    from inspection.cli.dashboard import APP, dashboard_env, streamlit_command

    port = walk.free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path("/tmp") / f"dashboard-scale-{port}.log"
    env = dashboard_env(site)
    env["PYTHONPATH"] = str(REPO)
    command = streamlit_command(APP, host="127.0.0.1", port=port)  # as served: the cookie route
    with open(log, "w") as out:
        server = subprocess.Popen(
            command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        walk._wait_healthy(url, server, log)
        with walk.browser() as driver:
            timer = Walk(driver)
            driver.get(url)

            def overview() -> float:
                walk.wait_text(driver, "h1", "Overview", timeout=300)
                return walk.settle(driver, timeout=300)

            walk.wait_text(driver, "h1", "Sign in")
            walk.settle(driver)  # the login form drawn before the clock starts
            typed = time.time()
            walk.sign_in(driver, user, password)
            timer.step(SIGN_IN, overview, acted_after=typed)
            for title in PAGES:
                timer.step(title, lambda t=title: walk.open_page(driver, t, 300))
            walk.open_page(driver, "Review queue", timeout=300)
            _queue_pages(driver, timer)
            time.sleep(DATA_TTL_S + 1)  # the pages' cached reads expire: a later visit's cost
            for title in AGAIN:
                try:
                    timer.step(
                        f"{title} {AGAIN_NOTE}", lambda t=title: walk.open_page(driver, t, 60)
                    )
                except walk.WalkError as exc:  # on record, not a crash that loses the rest
                    timer.steps[f"{title} {AGAIN_NOTE}: failed"] = {"error": str(exc)[:300]}
                    driver.save_screenshot(str(log.with_suffix(".png")))

            def reopen() -> float:  # a new session, signed in by the cookie
                driver.get(url)
                return overview()

            timer.step(RELOAD, reopen)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return timer.steps


def _queue_pages(driver, timer: Walk) -> None:
    """Times the review queue's *Next page*, *Go to page* ``DEEP_PAGE`` and *Next page* (keyset)
    from there."""
    import dashboard_walk as walk
    from selenium.webdriver.common.keys import Keys

    caption = '[data-testid="stCaptionContainer"]'

    def shown(page: int | None) -> float:
        if page is not None:
            walk.wait_text(driver, caption, f"page {page}", timeout=300)
        return walk.settle(driver, timeout=300)

    def next_page(page: int | None = None) -> float:
        walk.button(driver, "Next page").click()
        return shown(page)

    def go() -> float:
        goto.send_keys(str(DEEP_PAGE), Keys.ENTER)
        return shown(DEEP_PAGE)

    timer.step("Review queue: Next page", next_page)
    goto = walk.labelled_input(driver, "Go to page")
    goto.send_keys(Keys.CONTROL, "a")  # selected before the clock starts
    timer.step(f"Review queue: go to page {DEEP_PAGE}", go)
    timer.step(f"Review queue: Next page at page {DEEP_PAGE}", lambda: next_page(DEEP_PAGE + 1))


# ------------------------------------------------------------------------------- thresholds
def unbiased_sample(board) -> thresholds.LabelledScores:
    """The Thresholds page's default sample: the live bundle's held-out split + the random
    audit sample, named by its parts."""
    bundle = thresholds.default_bundle(board.registry, PRODUCT)
    parts = [thresholds.validation_scores(board.registry, PRODUCT, bundle),
             thresholds.audit_scores(board.store, PRODUCT)]  # fmt: skip
    parts = [p for p in parts if p is not None and len(p)]
    return thresholds.combine(parts, " + ".join(p.source for p in parts))


def audit_sample(board) -> thresholds.LabelledScores:
    """What the Thresholds page chooses a budget on: the live bundle's audit parts on its
    signed scale (never the held-out split model health judges on)."""
    bundle = thresholds.default_bundle(board.registry, PRODUCT)
    scale = thresholds.bundle_scale(board.registry, PRODUCT, bundle)
    return thresholds.audit_scores(board.store, PRODUCT, bundle, scale)


def threshold_row(board, budget: float = 0.01) -> dict[str, Any]:
    """The Thresholds page's budget suggestion on the audit sample vs held-out good parts of
    the store."""
    store = board.store
    sample = audit_sample(board)
    suggestion, choice = thresholds.suggest_for_budget(sample, budget)
    held_out = (
        Inspection.product == PRODUCT,
        Inspection.mask_sha.is_(None),  # seeded truth: good samples carry no mask
        Inspection.audit_sample.is_(False),
    )
    threshold = suggestion.threshold
    stated = thresholds.reject_interval(sample, threshold)
    with store.session() as session:
        n = int(session.scalar(select(func.count()).where(*held_out)))
        rejected = int(
            session.scalar(select(func.count()).where(*held_out, Inspection.score >= threshold))
        )
    rate = rejected / n
    reviewed = thresholds.reviewed_scores(store, PRODUCT)
    biased = thresholds.tradeoff(reviewed, threshold).false_alarm_rate
    return {
        "product": PRODUCT,
        "budget": budget,
        "confidence": thresholds.BUDGET_CONFIDENCE,
        "sample": sample.source,
        "n_good_in_sample": int(sample.n_good),
        "upper_bound_at_confidence": round(choice.false_reject_bound, 5),
        "n_needed": choice.n_needed,
        "held_out_good": n,
        "threshold": round(threshold, 4),
        "stated_reject": round(stated.value, 5),
        "stated_interval_95": [round(stated.low, 5), round(stated.high, 5)],
        "held_out_rejected": rejected,
        "held_out_reject_rate": round(rate, 5),
        "within_interval": stated.low <= rate <= stated.high,
        "within_budget": rate <= budget,
        "biased_reviewed_reject_rate_at_same_threshold": round(float(biased), 4),
    }


def _range(values: list[float], fmt: str = ".2f") -> str:
    """'1.23' or '1.23–1.41' (min–max of the runs), bold when a run is over the budget."""
    if not values:
        return "-"
    low, high = min(values), max(values)
    text = f"{low:{fmt}}" if low == high else f"{low:{fmt}}–{high:{fmt}}"
    return f"**{text}**" if high > BUDGET_S else text


def _chromium(report: dict[str, Any], code: str, step: str, field: str = "s"):
    return [
        w["steps"][step][field] for w in _walks(report, code) if field in w["steps"].get(step, {})
    ]


def _walks(report: dict[str, Any], code: str) -> list[dict[str, Any]]:
    return report.get("chromium", {}).get(code, {}).get("walks", [])


COLUMNS = {"after": "", "cold": ", cold (OS page cache dropped, PostgreSQL restarted)"}
"""The Chromium columns (``report['chromium']`` keys), in table order."""


def _page_table(report: dict[str, Any]) -> list[str]:
    """One row per page: Python, and Chromium per kind of walk (warm, cold)."""
    python_rows = {  # Chromium step: Python workload
        SIGN_IN: "Overview",
        "Review queue": "Review queue page 1",
        f"Review queue: Next page at page {DEEP_PAGE}": f"Review queue page {DEEP_PAGE}",
    }
    steps = [SIGN_IN, *PAGES, "Review queue: Next page", f"Review queue: go to page {DEEP_PAGE}"]
    steps += [f"Review queue: Next page at page {DEEP_PAGE}"]
    steps += [*(f"{t} {AGAIN_NOTE}" for t in AGAIN), RELOAD]
    python = report.get("python", {})
    chromium = report.get("chromium", {})
    walked = [code for code in COLUMNS if _walks(report, code)]
    headers = [
        "page",
        "Python (s)",
        *(f"Chromium{COLUMNS[c]} ({chromium[c]['code']}) (s)" for c in walked),
        "of it until the server's last message (s)",
        "of it browser long tasks (s)",
        "sent (KB)",
    ]
    rows = [
        [
            step,
            python.get(python_rows.get(step, step), "-"),
            *(_range(_chromium(report, c, step)) for c in walked),
            _range(_chromium(report, "after", step, "last_message_s")),
            _range(_chromium(report, "after", step, "long_tasks_s")),
            _range(_chromium(report, "after", step, "kb"), ".1f").strip("*"),
        ]
        for step in steps + [n for n in python if n not in steps and n not in python_rows.values()]
    ]
    return table(headers, rows)


def _walks_note(report: dict[str, Any]) -> list[str]:
    return [
        f"- *{code}* ({report['chromium'][code]['code']}): {len(walks)} at "
        + ", ".join(f"{w['at'][11:16]} (load {w['load']})" for w in walks)
        for code in COLUMNS
        if (walks := _walks(report, code))
    ]


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Dashboard at {report['inspections']:,} results ({report['backend']})",
        "",
        f"CPU {report['cpu']}; load before {report['load_before']}, after {report['load_after']}.",
        f"Store filled by `scripts/seed_dashboard.py` (bulk INSERT through the real schema, "
        f"rollups rebuilt): {report['inspections']:,} results, {report['reviews']:,} reviewed.",
        f"Command: `heavy --alone {report['command']}`.",
        "",
        *_page_table(report),
        "",
        "*Python*: one uncached run of the page's reads and computations. *Chromium*: "
        "headless, a fresh server per walk, "
        "min–max over the walks (bold: a walk over the budget), from the click or Enter in the "
        "page to the paint after its last DOM mutation, on the page's clock "
        "(`scripts/dashboard_walk.py` DRAWN_JS). *until the server's last message*: from the "
        "action until the script run's last "
        "websocket message arrived; *long tasks*: the browser's main thread busy in tasks over "
        "50 ms in between (scripts, style, layout). Page budget: "
        f"{report['budget_s']} s. Walks:",
        *_walks_note(report),
    ]
    failed = {
        step: info["error"]
        for code in COLUMNS
        for walk in _walks(report, code)
        for step, info in walk["steps"].items()
        if "error" in info
    }
    lines += [f"\n**{k}**: {v}" for k, v in failed.items()]
    row = report.get("thresholds")
    if row and "within_budget" in row:
        low, high = row["stated_interval_95"]
        lines += [
            "",
            "## Thresholds: budget on the page's unbiased sample vs held-out good parts",
            "",
            f"Sample: {row['sample']}, {row['n_good_in_sample']:,} good parts; held-out: "
            f"{row['held_out_good']:,} good parts of the store outside the audit sample. The "
            f"page's threshold is the lowest whose rejects among the sample's good parts have an "
            f"exact one-sided {row['confidence']:.0%} upper bound within the budget (bound "
            f"{row['upper_bound_at_confidence']:.2%}"
            + ("" if row["n_needed"] is None else f"; too few: {row['n_needed']} needed")
            + ").",
            "",
            f"Threshold {row['threshold']:.4f} at a {row['budget']:.1%} budget: stated reject "
            f"{row['stated_reject']:.2%} ({low:.2%}–{high:.2%}); held-out good parts rejected "
            f"{row['held_out_rejected']:,} = {row['held_out_reject_rate']:.2%}, within the "
            f"interval: {_yes(row['within_interval'])}, within the budget: "
            f"{_yes(row['within_budget'])}. Reviewed (biased) parts at that threshold: "
            f"{row['biased_reviewed_reject_rate_at_same_threshold']:.1%} rejected.",
        ]
    lines += ["", f"Query plans: `plans_{report['backend']}.json`.", ""]
    return "\n".join(lines)


def _yes(flag: bool) -> str:
    return "yes" if flag else "NO"


def chromium_walks(args, report: dict[str, Any]) -> None:
    """``args.walks`` walks against this working tree's app, added to the runs of the same
    commit (replacing another commit's); ``--cold``: each after the OS page cache was dropped
    (and PostgreSQL restarted)."""
    code = "cold" if args.cold else "after"
    label = app_code()
    walks = []
    for _ in range(args.walks):
        if args.cold:
            drop_page_cache(restart_postgres=report["backend"] == "postgresql")
        at, load = datetime.now(timezone.utc).isoformat(timespec="seconds"), load_average()
        print(f"walk: {code} ({label}), load {load}", flush=True)
        walks.append({"at": at, "load": load, "steps": browser_times(args.site, args.user,
                                                                      args.password)})  # fmt: skip
    chromium = report.setdefault("chromium", {})
    earlier = chromium.get(code, {})
    kept = earlier.get("walks", []) if earlier.get("code") == label else []
    chromium[code] = {"code": label, "walks": kept + walks}


def app_code() -> str:
    """The last commit that changed the dashboard's own code (a walk's label), ``+ working
    tree`` when it has uncommitted changes."""
    app = ("apps", "inspection/dashboard")
    git = partial(subprocess.run, cwd=REPO, capture_output=True, text=True)
    commit = git(["git", "log", "-1", "--format=%h", "HEAD", "--", *app]).stdout.strip()
    dirty = git(["git", "diff", "--quiet", "HEAD", "--", *app]).returncode != 0
    return commit + (" + working tree" if dirty else "")


def drop_page_cache(restart_postgres: bool) -> None:
    """Write the page cache back and drop it (``vm.drop_caches = 1``, root only): the store's
    file pages are read from the disk again, as after a reboot. ``restart_postgres``: the local
    PostgreSQL cluster (``scripts/services.sh``'s) restarts first, its shared buffers empty too."""
    if restart_postgres:
        listed = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=True)
        version, name = listed.stdout.split()[:2]
        subprocess.run(["pg_ctlcluster", version, name, "restart"], check=True)
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("1\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", type=Path, required=True, help="a seeded site's YAML")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--browser", action="store_true", help="also time pages in Chromium")
    parser.add_argument("--walks", type=int, default=2, help="Chromium walks")
    parser.add_argument(
        "--only-browser", action="store_true", help="keep the report's other rows as they are"
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="cold walks: PostgreSQL restarted, page cache dropped (root)",
    )
    parser.add_argument("--plans", action="store_true", help="write the query plans too")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default="dashboard-bench-pw")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "dashboard")
    args = parser.parse_args()
    board = open_dashboard(args.site)
    backend = board.store.engine.dialect.name
    stem = f"scale_{backend}"
    report = previous_report(args.out, stem) | {"backend": backend, "budget_s": BUDGET_S}
    with recorded() as env:
        if not args.only_browser:
            python_rows(board, args, report)
        if args.browser or args.only_browser:
            chromium_walks(args, report)
        if not args.only_browser:
            report["thresholds"] = threshold_row(board)
    report |= env | {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    save_report(args.out, stem, report, _markdown(report))
    if args.plans or not args.only_browser:
        save_report(args.out, f"plans_{backend}", plans(board))
    print(_markdown(report))


def python_rows(board, args, report: dict[str, Any]) -> None:
    """The store's size, and each page's reads and computations timed in this process."""
    with board.store.session() as session:
        report["inspections"] = int(session.scalar(select(func.count(Inspection.id))))
        report["reviews"] = int(
            session.scalar(select(func.count()).where(Inspection.review_label.is_not(None)))
        )
    report["python"] = {
        k: round(statistics.median(seconds(f) for _ in range(args.repeats)), 3)
        for k, f in workloads(board).items()
    }
    print(report["python"], flush=True)


if __name__ == "__main__":
    main()
