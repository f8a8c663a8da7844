"""Hostile time and backlog: a line PC's wrong clock, a refused row, reviews at a station and
months of neglected partitions, against a real central PostgreSQL (``scripts/services.sh``).

Each case runs on a fresh central database, with a station's local SQLite store forwarding
through the real ``Forwarder`` as the station's own role. The script runs against the code on
``PYTHONPATH`` (``import inspection``), so the same cases measure an older commit too:

    git worktree add /tmp/before-time e60fb7e
    PYTHONPATH=/tmp/before-time python bench/hostile_time.py --label before
    python bench/hostile_time.py --label now

Each run adds its column to ``reports/plant/hostile_time.json``; the markdown shows both.
``--python310`` also runs the tree's partition tests on that interpreter.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from _report import previous_report, recorded, save_report

import inspection
from inspection.store import partitions
from inspection.store.forward import Forwarder, backlog, central_entry
from inspection.store.models import Inspection, Review
from inspection.store.retention import RetentionConfig, prune
from inspection.store.store import Store

try:  # after e60fb7e the role code has its own module and the link is verified TLS
    from inspection.store.central_roles import grant_station
except ImportError:
    from inspection.store.forward import grant_station  # type: ignore[attr-defined,no-redef]

REPORTS = Path(__file__).resolve().parents[1] / "reports" / "plant"
ADMIN = "postgresql+psycopg://inspection:inspection@127.0.0.1:5432/inspection_test"
CA_FILE = Path("/tmp/inspection-postgres-tls/ca.pem")
YEAR = timedelta(days=400)
"""Further back than the default ``row_days`` (365)."""


@contextmanager
def central_site(work: Path) -> Iterator[tuple[Store, str, str]]:
    """A fresh migrated central database and a station role; yields (owner store, station
    role, the station's URL)."""
    work.mkdir(parents=True, exist_ok=True)
    name, station = f"ht_{uuid.uuid4().hex[:10]}", f"line-{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = ADMIN.rsplit("/", 1)[0] + f"/{name}"
    owner = Store.migrated(url, work / "central-blobs")
    password = grant_station(owner, station)
    station_url = url.replace("inspection:inspection@", f"{station}:{password}@")
    try:
        yield owner, station, station_url
    finally:
        owner.engine.dispose()
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(sa.text(f'DROP ROLE IF EXISTS "{station}"'))
        admin.dispose()


def forwarder(local: Store, url: str, blobs: Path, batch: int = 200) -> Forwarder:
    """The station's forwarder, over verified TLS where this code has it."""
    try:
        return Forwarder(local, url, blobs, batch=batch, ca_file=CA_FILE)  # type: ignore[call-arg]
    except TypeError:  # before the TLS link
        return Forwarder(local, url, blobs, batch=batch)


def station_store(work: Path, station: str, stamps: list[datetime], tag: str = "r") -> Store:
    """A station's local store holding one waiting result per stamp (its clock's time)."""
    local = Store.migrated(f"sqlite:///{work / f'{tag}.db'}", work / f"{tag}-blobs")
    for i, at in enumerate(stamps):
        image = f"{tag} {i} {uuid.uuid4()}".encode()
        key = f"{station}/{tag}{i:04d}"
        local.add_inspection(
            outbox=[central_entry(key, len(image))], request_id=key, created_at=at,
            product="brick", station_id=station, score=0.7, threshold=0.5, verdict="OK",
            model_version="brick/v1", bundle_id="v1", latency_ms=10.0, width=8, height=8,
            image_sha=local.blobs.put(image, ".png"),
        )  # fmt: skip
    return local


def drain(send: Forwarder, attempts: int = 3) -> str | None:
    """Forward until nothing moves, ``attempts`` tries; returns the last error, if any."""
    error = None
    for _ in range(attempts):
        try:
            send.drain()
            return None
        except sa.exc.SQLAlchemyError as exc:
            error = str(exc.orig or exc).splitlines()[0]
    return error


def count(store: Store, query: Any) -> int:
    with store.session() as session:
        return int(session.scalar(query) or 0)


def clock_case(work: Path, offset: timedelta) -> dict[str, Any]:
    """20 results stamped by a clock ``offset`` off and 20 by a right one, forwarded, then the
    central hourly prune (default retention) at the real time."""
    now = datetime.now(timezone.utc)
    with central_site(work) as (owner, station, url):
        local = station_store(work, station, [now + offset] * 20 + [now] * 20)
        send = forwarder(local, url, owner.blobs.root)
        error = drain(send)
        send.stop()
        central = count(owner, sa.select(sa.func.count()).select_from(Inspection))
        report = prune(owner, RetentionConfig(pause_seconds=0.0), now=now)
        left = count(owner, sa.select(sa.func.count()).select_from(Inspection))
        pruned = sa.select(sa.func.count()).where(Inspection.blobs_pruned_at.is_not(None))
        return {
            "forwarded": central, "error": error, "rows_after_prune": left,
            "rows_deleted": report.rows_deleted, "blobs_stripped": count(owner, pruned),
            "flagged": getattr(report, "clock_skewed", None),
        }  # fmt: skip


def refused_case(work: Path) -> dict[str, Any]:
    """A backlog of 100 where row 37 has a product name over the central ``String(64)``."""
    with central_site(work) as (owner, station, url):
        local = station_store(work, station, [datetime.now(timezone.utc)] * 100)
        with local.session() as session:
            bad = Inspection.request_id == f"{station}/r0037"
            session.execute(sa.update(Inspection).where(bad).values(product="p" * 80))
        send = forwarder(local, url, owner.blobs.root, batch=40)
        error = drain(send)
        send.stop()
        waiting = backlog(local)
        return {
            "central": count(owner, sa.select(sa.func.count()).select_from(Inspection)),
            "waiting": waiting.rows, "quarantined": getattr(waiting, "quarantined", None),
            "alarm": waiting.alarm(3600), "error": error,
        }  # fmt: skip


def reviews_case(work: Path) -> dict[str, Any]:
    """5 results forwarded, then 3 reviews made at the station (the call its API makes)."""
    with central_site(work) as (owner, station, url):
        local = station_store(work, station, [datetime.now(timezone.utc)] * 5)
        send = forwarder(local, url, owner.blobs.root)
        drain(send)
        try:
            from inspection.store.forward import CENTRAL_REVIEWS

            sinks: dict[str, Any] = {"outbox": (CENTRAL_REVIEWS,)}
        except ImportError:  # before: the API wrote no outbox message for a review
            sinks = {}
        ids = [row.id for row in local.list_inspections()][:3]
        for label, inspection_id in zip(("defect", "false_alarm", "good"), ids, strict=True):
            local.add_review(inspection_id, label=label, reviewer="ann", **sinks)
        error = drain(send)
        send.stop()
        labelled = sa.select(sa.func.count()).where(Inspection.review_label.is_not(None))
        return {
            "reviews_at_station": 3,
            "central_reviews": count(owner, sa.select(sa.func.count()).select_from(Review)),
            "central_labelled": count(owner, labelled), "error": error,
        }  # fmt: skip


def neglect_case(work: Path) -> dict[str, Any]:
    """Six months without a prune, a table in the way of one month the prune makes, then the
    hourly prune three times while two forwarders send rows of every month."""
    now = datetime.now(timezone.utc)
    later = partitions.month_of(now, 6)
    months = [partitions.month_of(now, k) for k in range(10)]
    with central_site(work) as (owner, station, url):
        stray = f"inspections_p{partitions.month_of(later, 1):%Y%m}"
        with owner.engine.begin() as connection:
            connection.execute(sa.text(f"CREATE TABLE {stray} (id text)"))
        errors: list[str] = []
        stamps = [m + timedelta(hours=h + 1) for h in range(5) for m in months]
        locals_ = [station_store(work, station, stamps, tag=f"w{w}") for w in range(2)]
        started = threading.Barrier(3)

        def run(local: Store) -> None:
            send = forwarder(local, url, owner.blobs.root, batch=2)  # many small transactions
            started.wait()
            error = drain(send, attempts=20)
            if error:
                errors.append(error)
            send.stop()

        threads = [threading.Thread(target=run, args=(local,)) for local in locals_]
        for thread in threads:
            thread.start()
        started.wait()
        outcome = "completed"
        try:
            for _ in range(3):  # three hourly runs
                report = prune(owner, RetentionConfig(pause_seconds=0.0), now=later)
        except sa.exc.SQLAlchemyError as exc:
            outcome = f"aborted: {str(exc.orig or exc).splitlines()[0]}"
        finally:
            for thread in threads:
                thread.join()
        sent = len(stamps) * len(locals_)
        with owner.engine.begin() as connection:
            made = {p.name for p in partitions.partitions(connection)}
        wanted = {f"inspections_p{m:%Y%m}" for m in months}
        central = count(owner, sa.select(sa.func.count()).select_from(Inspection))
        return {
            "prune": outcome, "months_missing": sorted(wanted - made),
            "failed_reported": getattr(report, "partitions_failed", None)
            if outcome == "completed" else None,
            "forwarder_errors": len(errors), "first_error": errors[0] if errors else None,
            "sent": sent, "central": central, "lost": sent - central,
        }  # fmt: skip


def py310_case(python: str) -> dict[str, Any]:
    """The tree's partition tests on another interpreter (``--python310``)."""
    root = Path(inspection.__file__).resolve().parents[1]
    done = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
         "--rootdir", str(root), str(root / "tests/store/test_partitions.py")],
        capture_output=True, text=True, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        cwd=tempfile.gettempdir(),
    )  # fmt: skip
    return {"python": python, "summary": done.stdout.strip().splitlines()[-1]}


CASES: dict[str, tuple[str, Callable[[Path], dict[str, Any]]]] = {
    "clock_back": ("line PC clock back 400 days, then the central prune",
                   lambda w: clock_case(w, -YEAR)),
    "clock_ahead": ("line PC clock ahead 400 days, then the central prune",
                    lambda w: clock_case(w, YEAR)),
    "refused_row": ("one refused row (product over String(64)) in a backlog of 100",
                    refused_case),
    "reviews": ("3 reviews made at a line PC", reviews_case),
    "neglect": ("6 months without a prune, one month blocked, 3 prunes while 2 forwarders send",
                neglect_case),
}  # fmt: skip


def markdown(report: dict[str, Any]) -> str:
    runs = report["runs"]
    labels = [label for label in ("before", "now") if label in runs]
    lines = [
        "# Hostile time and backlog: wrong clocks, a refused row, reviews, neglected partitions",
        "",
        *(
            f"- {label}: `{runs[label]['command']}` at {runs[label]['commit']} on "
            f"{runs[label]['environment']['cpu']} (load {runs[label]['environment']['load_before']})"
            for label in labels
        ),
        "",
        "Central PostgreSQL 15 of `scripts/services.sh`, a fresh database per case, the station's "
        "own role (`grant_station`) forwarding from a local SQLite store with the real "
        "`Forwarder` (verified TLS where the code has it); `prune` with the default retention "
        "(`row_days` 365). Figures are counts, not timings.",
        "",
        f"| case | {' | '.join(labels)} |",
        f"| --- |{' --- |' * len(labels)}",
    ]
    for case, (title, _) in CASES.items():
        cells = [_cell(case, runs[label]["cases"].get(case)) for label in labels]
        lines.append(f"| {title} | {' | '.join(cells)} |")
    if any("py310" in runs[label]["cases"] for label in labels):
        cells = [runs[label]["cases"].get("py310", {}).get("summary", "-") for label in labels]
        lines.append(f"| tests/store/test_partitions.py on Python 3.10 | {' | '.join(cells)} |")
    return "\n".join([*lines, "", *report.get("notes", []), ""])


def _cell(case: str, r: dict[str, Any] | None) -> str:
    if r is None:
        return "-"
    if case.startswith("clock"):
        return (f"{r['forwarded']} of 40 central; prune deleted {r['rows_deleted']}, "
                f"stripped {r['blobs_stripped']}, {r['rows_after_prune']} left; flagged "
                f"{r['flagged'] if r['flagged'] is not None else '(no flag)'}")  # fmt: skip
    if case == "refused_row":
        return (f"{r['central']} central, {r['waiting']} waiting, quarantined "
                f"{r['quarantined'] if r['quarantined'] is not None else '(none)'}, alarm "
                f"{r['alarm']}{'; ' + r['error'] if r['error'] else ''}")  # fmt: skip
    if case == "reviews":
        return (f"{r['central_reviews']} of {r['reviews_at_station']} reviews central, "
                f"{r['central_labelled']} results labelled")  # fmt: skip
    return (f"prune {r['prune']}; months missing {len(r['months_missing'])}; forwarder errors "
            f"{r['forwarder_errors']}{' (' + r['first_error'] + ')' if r['first_error'] else ''}"
            f"; {r['sent']} sent, {r['central']} central, lost {r['lost']}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", choices=("before", "now"), default="now")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--python310", default=None, help="Interpreter for the partition tests.")
    args = parser.parse_args()
    report = previous_report(REPORTS, "hostile_time")
    report.setdefault("runs", {})
    root = Path(inspection.__file__).resolve().parents[1]
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    results: dict[str, Any] = {}
    with recorded() as env, tempfile.TemporaryDirectory() as tmp:
        for case in args.cases.split(","):
            results[case] = CASES[case][1](Path(tmp) / case)
            print(case, results[case], flush=True)
        if args.python310:
            results["py310"] = py310_case(args.python310)
    report["runs"][args.label] = {
        "cases": results, "commit": commit, "command": env.pop("command"), "environment": env,
    }  # fmt: skip
    save_report(REPORTS, "hostile_time", report, markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
