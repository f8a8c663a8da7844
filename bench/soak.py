"""Soak: a station inspects many parts against a pre-filled store while retention runs.

Per store (SQLite, PostgreSQL): a scratch ``inspection serve`` (one worker, 127.0.0.1 only)
serving a live bundle; its store pre-filled with ``--prefill`` results spread over
``--prefill-days`` (2.2 % NG; rows older than their blob window already without blobs, the
recent ones pointing at real blob files: a store at retention's steady state). ``--clients``
threads then send ``--parts`` small demo images (unique request ids, retried on error)
through the HTTP API while ``inspection store prune`` runs every ``--prune-every`` s as its
own process, with retention accelerated (blob windows in minutes: ``--blob-minutes``) so
blobs written during the soak are pruned during it. Every ``--window`` acknowledged parts:
p50/p99 latency of the window, the server's RSS, disk (database + blobs) and store rows.
Afterwards: lost (acknowledged, not stored), duplicated (stored twice), rows pointing at a
missing blob. Writes ``reports/soak/soak.json`` and ``soak.md``.

    python bench/soak.py                                   # small: see --help for the sizes
    python bench/soak.py --prefill 5000000 --parts 200000 --window 10000   # the issue's size

The pre-fill inserts rows with SQLAlchemy's bulk insert into the real schema (the Store API
commits and fsyncs one row at a time: hours for millions); soak parts go through the API.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import psutil
import yaml
from _report import cpu_description, load_average, save_report

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from load import ClientLog, prepare, send_until_acked  # noqa: E402
from replicas import PG_ADMIN_URL, create_database, drop_database, tiny_registry  # noqa: E402

from inspection.store.models import Inspection  # noqa: E402
from inspection.store.retention import database_bytes  # noqa: E402
from inspection.store.store import Store  # noqa: E402

REPORTS = REPO / "reports" / "soak"
NG_RATE = 0.022


# ------------------------------------------------------------------------- pre-fill
def prefill(store: Store, rows: int, days: float, blob_days: float) -> float:
    """Insert ``rows`` results spread over the past ``days``; returns seconds taken."""
    started = time.perf_counter()
    pool = [store.blobs.put(os.urandom(2048), ".png") for _ in range(64)]
    now = datetime.now(timezone.utc)
    rng = random.Random(5)
    chunk = 20_000
    for first in range(0, rows, chunk):
        batch = [
            _row(i, rows, days, blob_days, now, pool, rng)
            for i in range(first, min(rows, first + chunk))
        ]
        with store.session() as session:
            session.execute(Inspection.__table__.insert(), batch)
    return time.perf_counter() - started


def _row(
    i: int,
    rows: int,
    days: float,
    blob_days: float,
    now: datetime,
    pool: list[str],
    rng: random.Random,
) -> dict[str, Any]:
    age = days * (1 - i / rows)  # oldest first
    ng = rng.random() < NG_RATE
    holds = age < blob_days or (ng and age < 90)
    return {
        "id": uuid.uuid4().hex,
        "created_at": now - timedelta(days=age),
        "product": "brick",
        "station_id": f"st-{i % 4}",
        "part_id": f"prefill-{i}",
        "source": "api",
        "score": rng.random(),
        "threshold": 0.5,
        "verdict": "NG" if ng else "OK",
        "model_version": "v0001",
        "bundle_id": "v0001-fp32",
        "latency_ms": 5.0,
        "mask_source": "raw",
        "regions": [],
        "width": 64,
        "height": 64,
        "image_sha": rng.choice(pool),
        "map_sha": rng.choice(pool) if holds else None,
        "mask_sha": None,
        "overlay_sha": None,
        "audit_sample": False,
        "blobs_pruned_at": None if holds else now - timedelta(days=age - blob_days),
    }


# ------------------------------------------------------------------------- the run
def unique_png(base: np.ndarray, n: int) -> bytes:
    """``base`` (H, W, 3) uint8 with its first pixel set from ``n``: every part's image is a
    distinct blob, as on a line (identical bytes would be stored once)."""
    image = base.copy()
    image[0, 0] = (n & 255, (n >> 8) & 255, (n >> 16) & 255)
    return cv2.imencode(".png", image)[1].tobytes()


class Pruner(threading.Thread):
    """``inspection store prune`` as its own process every ``every`` seconds."""

    def __init__(self, config: Path, every: float) -> None:
        super().__init__(daemon=True)
        self.config, self.every = config, every
        self.runs: list[float] = []
        self.failures = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.every):
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "inspection", "store", "prune", "--config", str(self.config)],
                cwd=REPO, capture_output=True, text=True, check=False,
            )  # fmt: skip
            self.runs.append(round(time.perf_counter() - started, 1))
            self.failures += done.returncode != 0

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def sample(bench: Any, log: ClientLog, window: list[float]) -> dict[str, Any]:
    """One window's figures: latency of its parts, RSS, disk, rows."""
    store = Store(bench.store_url, bench.root / "blobs")
    try:
        with store.session() as session:
            from sqlalchemy import func, select

            rows = int(session.scalar(select(func.count()).select_from(Inspection)) or 0)
        blobs = sum(size for _sha, size in store.blobs.files())
        db = database_bytes(store) or 0
    finally:
        store.engine.dispose()
    server = psutil.Process(bench.server.pid)
    rss = sum(p.memory_info().rss for p in [server, *server.children(recursive=True)])
    array = np.asarray(window)
    return {
        "parts": len(log.acked),
        "p50_ms": round(float(np.percentile(array, 50)), 1),
        "p99_ms": round(float(np.percentile(array, 99)), 1),
        "rss_mb": round(rss / 1e6, 1),
        "disk_mb": round((blobs + db) / 1e6, 1),
        "blob_mb": round(blobs / 1e6, 1),
        "rows": rows,
    }


def soak(bench: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Clients send ``args.parts`` parts; a window sample every ``args.window`` acks."""
    log = ClientLog()
    per_client = args.parts // args.clients
    windows: list[dict[str, Any]] = []

    bases = [cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) for data in bench.images]

    def worker(k: int) -> None:
        with httpx.Client(base_url=bench.base_url, timeout=30.0) as client:
            for i in range(per_client):
                image = unique_png(bases[i % len(bases)], k * per_client + i)
                send_until_acked(client, bench, f"soak-{k}-{i}", image, log, 120.0)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(args.clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    seen = 0
    while any(t.is_alive() for t in threads) or seen + args.window <= len(log.latencies_ms):
        if len(log.latencies_ms) >= seen + args.window:
            windows.append(sample(bench, log, log.latencies_ms[seen : seen + args.window]))
            seen += args.window
            print(f"  {windows[-1]}", flush=True)
        time.sleep(0.5)
    for thread in threads:
        thread.join()
    return {"windows": windows, "log": log, "seconds": time.perf_counter() - started}


def verify(bench: Any, acked: dict[str, str]) -> dict[str, Any]:
    """Soak rows: lost, duplicated, and rows pointing at a missing blob (pruned rows excepted)."""
    from sqlalchemy import select

    store = Store(bench.store_url, bench.root / "blobs")
    try:
        with store.session() as session:
            rows = list(
                session.execute(
                    select(Inspection).where(Inspection.part_id.like("soak-%"))
                ).scalars()
            )
        by_part: dict[str, list[str]] = {}
        dangling = 0
        for row in rows:
            by_part.setdefault(row.part_id, []).append(row.id)
            shas = [row.map_sha, row.mask_sha, row.overlay_sha]
            shas += [row.image_sha] if row.blobs_pruned_at is None else []
            dangling += sum(1 for sha in shas if sha and not store.blobs.exists(sha))
        lost = sum(1 for rid, iid in acked.items() if iid not in by_part.get(rid, []))
        return {
            "acknowledged": len(acked),
            "lost": lost,
            "duplicated": sum(1 for ids in by_part.values() if len(ids) > 1),
            "rows_pointing_at_missing_blobs": dangling,
            "soak_rows_without_blobs": sum(1 for r in rows if r.blobs_pruned_at is not None),
        }
    finally:
        store.engine.dispose()


def run_store(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    pg_name = None
    if kind == "postgres":
        args.store_url, pg_name = create_database(PG_ADMIN_URL)
    else:
        args.store_url = None
    try:
        bench = prepare(args, f"soak-{kind}")
        retention = {
            "default": {
                "blob_days": args.blob_minutes / 1440,
                "kept_blob_days": 3 * args.blob_minutes / 1440,
                "row_days": 365,
            },
            "grace_minutes": args.blob_minutes / 2,
            "disk_budget_gb": args.budget_gb,
        }
        (bench.root / "retention.yaml").write_text(yaml.safe_dump(retention), encoding="utf-8")
        store = Store(bench.store_url, bench.root / "blobs")
        print(f"{kind}: pre-filling {args.prefill:,} rows", flush=True)
        prefill_s = prefill(store, args.prefill, args.prefill_days, blob_days=7)
        store.engine.dispose()
        bench.start()
        pruner = Pruner(bench.config_path, args.prune_every)
        pruner.start()
        try:
            run = soak(bench, args)
        finally:
            pruner.stop()
            bench.stop()
        windows = run["windows"]
        warm = windows[min(1, len(windows) - 1)]
        return {
            "store": kind,
            "prefill_rows": args.prefill,
            "prefill_seconds": round(prefill_s, 1),
            "parts": len(run["log"].acked),
            "seconds": round(run["seconds"], 1),
            "windows": windows,
            "rss_growth_after_warmup": round(windows[-1]["rss_mb"] / warm["rss_mb"] - 1, 4),
            "p99_end_over_start": round(windows[-1]["p99_ms"] / warm["p99_ms"], 2),
            "prune_runs_s": pruner.runs,
            "prune_failures": pruner.failures,
            "client_statuses": dict(run["log"].statuses),
            "gave_up": len(run["log"].gave_up),
            "verification": verify(bench, run["log"].acked),
        }
    finally:
        if pg_name is not None:
            drop_database(PG_ADMIN_URL, pg_name)


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Soak (bench/soak.py)", "", f"Command: `{report['command']}`", "",
             f"CPU: {report['cpu']}; load at start {report['load_start']}, end {report['load_end']}.", ""]  # fmt: skip
    for run in report["runs"]:
        v = run["verification"]
        lines += [
            f"## {run['store']}: {run['parts']:,} parts in {run['seconds']} s against "
            f"{run['prefill_rows']:,} pre-filled rows",
            "",
            f"RSS growth after warm-up (window 2 -> last): {run['rss_growth_after_warmup']:.1%}; "
            f"p99 last/window 2: {run['p99_end_over_start']}x; lost {v['lost']}, duplicated "
            f"{v['duplicated']}, rows pointing at a missing blob "
            f"{v['rows_pointing_at_missing_blobs']}; soak rows pruned of blobs during the run: "
            f"{v['soak_rows_without_blobs']}; prune runs (s): {run['prune_runs_s']}, failed "
            f"{run['prune_failures']}.",
            "",
            "| parts | p50 ms | p99 ms | RSS MB | disk MB (blobs) | rows |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {w['parts']:,} | {w['p50_ms']} | {w['p99_ms']} | {w['rss_mb']} | "
            f"{w['disk_mb']} ({w['blob_mb']}) | {w['rows']:,} |"
            for w in run["windows"]
        ]
        lines.append("")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", help="Registry with a live bundle (default: train one).")
    parser.add_argument("--product", default="brick")
    parser.add_argument("--stores", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--prefill", type=int, default=200_000)
    parser.add_argument("--prefill-days", type=float, default=400.0)
    parser.add_argument("--parts", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=2_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--prune-every", type=float, default=30.0)
    parser.add_argument("--blob-minutes", type=float, default=0.5)
    parser.add_argument("--budget-gb", type=float, default=50.0)
    parser.add_argument("--workdir", default="/tmp/inspection-soak")
    parser.add_argument("--out", default=str(REPORTS))
    args = parser.parse_args(argv)
    args.images, args.workers = None, 1
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    args.registry = args.registry or str(tiny_registry(Path(args.workdir), args.product))
    load_start = load_average()
    runs = [run_store(kind, args) for kind in args.stores]
    report = {
        "command": "python bench/soak.py " + " ".join(argv or sys.argv[1:]),
        "cpu": cpu_description(),
        "load_start": load_start,
        "load_end": load_average(),
        "runs": runs,
    }
    save_report(Path(args.out), "soak", report, markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
