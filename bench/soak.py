"""Soak: one station inspects many parts over HTTP and the PLC line path against a pre-filled
store while retention runs.

Per store (SQLite, PostgreSQL): ``inspection serve`` taking ``--clients`` HTTP clients and a
line station (``_station.ScratchLine``: OPC UA SignAndEncrypt, results signed to TLS MQTT) whose
file camera is rewritten before every trigger, on one store pre-filled with ``--prefill``
results at ``--prefill-rate`` parts/s (cached under ``--workdir``; ``row_days`` set so the
oldest rows age out at about the rate new parts arrive). Blob and outbox windows are cut to
``--blob-minutes``; ``inspection store prune`` runs every ``--prune-every`` s. Every
``--window`` parts: p50/p99 per path, RSS, CPU ms per part, disk, rows, load; afterwards lost,
duplicated and rows pointing at a missing blob. Writes ``reports/soak/soak-<store>.json``/``.md``.

    heavy python bench/soak.py --parts 2000 --window 500 --prefill 50000     # a quick look
    heavy python bench/soak.py --stores sqlite --prefill 5000000 --parts 200000 --window 10000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import psutil
import yaml
from _report import load_average, recorded, save_report, table
from _station import (
    CLI,
    REPO,
    Child,
    ScratchLine,
    create_database,
    database_exists,
    database_url,
    demo_test_images,
    drop_database,
    rename_database,
    tiny_registry,
)
from sqlalchemy import func, select, text

from inspection.core.registry import Registry
from inspection.line.handshake import ResultCode
from inspection.line.mosquitto import free_port
from inspection.line.softplc import HandshakeTimeout
from inspection.store import rollups
from inspection.store.models import Inspection
from inspection.store.retention import database_bytes
from inspection.store.store import Store
from inspection.store.tokens import create_token

REPORTS = REPO / "reports" / "soak"
NG_RATE = 0.022
PREFILL_FORMAT = 1
"""Bump when the pre-filled rows change: cached templates of another format are rebuilt."""


# ------------------------------------------------------------------------- pre-fill
@dataclass(frozen=True)
class Prefill:
    """A cached pre-filled store: the span its rows cover and ``source``, its SQLite file or
    PostgreSQL template database."""

    kind: str
    rows: int
    oldest: datetime
    newest: datetime
    build_seconds: float
    source: str


def prefilled(workdir: Path, kind: str, rows: int, rate: float) -> Prefill:
    """The cached pre-filled store of ``rows`` rows, built first when missing."""
    meta = workdir / "prefill" / f"{kind}-{rows}-v{PREFILL_FORMAT}.json"
    sqlite = kind == "sqlite"
    source = str(meta.with_suffix(".db")) if sqlite else f"soak_prefill_{rows}_v{PREFILL_FORMAT}"
    if meta.is_file() and (Path(source).is_file() if sqlite else database_exists(source)):
        data = json.loads(meta.read_text())
        span = (datetime.fromisoformat(data["oldest"]), datetime.fromisoformat(data["newest"]))
        return Prefill(kind, rows, *span, data["build_seconds"], source)
    meta.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    newest = datetime.now(timezone.utc)
    oldest = newest - timedelta(seconds=rows / rate)
    if sqlite:
        Path(source).unlink(missing_ok=True)
    name = None if sqlite else create_database()
    url = f"sqlite:///{source}" if name is None else database_url(name)
    store = Store.migrated(url, workdir / "prefill" / "no-blobs")
    print(f"{kind}: bulk-loading {rows:,} rows", flush=True)
    bulk_load(store, rows, oldest, newest)
    store.engine.dispose()
    if name is not None:
        drop_database(source)
        rename_database(name, source)
    made = Prefill(kind, rows, oldest, newest, round(time.perf_counter() - started, 1), source)
    times = {"oldest": oldest.isoformat(), "newest": newest.isoformat()}
    meta.write_text(json.dumps(times | {"build_seconds": made.build_seconds}))
    return made


def bulk_load(store: Store, rows: int, oldest: datetime, newest: datetime) -> None:
    """Insert ``rows`` results evenly spaced from ``oldest`` to ``newest`` (2.2 % NG, 1 in 500
    an audit sample, every row's blobs already pruned), indexes dropped while loading and
    rebuilt after, then the rollups rebuilt from the rows (as migration 0007 does)."""
    rng = np.random.default_rng(5)
    step = (newest - oldest) / rows
    chunk = 50_000
    with store.engine.begin() as connection:
        indexes = _drop_indexes(connection)
    for first in range(0, rows, chunk):
        count = min(chunk, rows - first)
        scores, draws = rng.random(count), rng.random(count)
        batch = [
            _row(first + j, oldest + step * (first + j), float(scores[j]), float(draws[j]))
            for j in range(count)
        ]
        with store.engine.begin() as connection:
            connection.execute(Inspection.__table__.insert(), batch)
        if first % 1_000_000 == 0:
            print(f"  {first + count:,} rows", flush=True)
    with store.engine.begin() as connection:
        for sql in indexes:
            connection.execute(text(sql))
        rollups.rebuild(connection)
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("ANALYZE"))


def _drop_indexes(connection: Any) -> list[str]:
    """Drop the results table's secondary indexes; returns the SQL that re-creates them."""
    if connection.dialect.name == "sqlite":
        query = (
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
            "AND tbl_name = 'inspections' AND sql IS NOT NULL"
        )
    else:
        query = (
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'inspections' "
            "AND indexname NOT IN (SELECT conname FROM pg_constraint)"
        )
    found = list(connection.execute(text(query)))
    for name, _sql in found:
        connection.execute(text(f'DROP INDEX "{name}"'))
    return [sql for _name, sql in found]


PREFILL_ROW = {"product": "brick", "source": "api", "threshold": 0.5, "model_version": "v0001",
               "bundle_id": "v0001-fp32", "mask_source": "raw", "regions": [], "width": 128,
               "height": 128}  # fmt: skip


def _row(i: int, created: datetime, score: float, draw: float) -> dict[str, Any]:
    ng, station = draw < NG_RATE, f"st-{i % 4}"
    return PREFILL_ROW | {
        "id": uuid.uuid4().hex,
        "request_id": f"{station}/prefill-{i}",
        "created_at": created,
        "station_id": station,
        "part_id": f"prefill-{i}",
        "score": 0.5 + score / 2 if ng else score / 2,
        "verdict": "NG" if ng else "OK",
        "latency_ms": 5.0 + 10 * draw,
        "image_sha": uuid.uuid4().hex * 2,  # a fingerprint; its file is long gone
        "audit_sample": i % 500 == 0,
        "blobs_pruned_at": created + timedelta(days=7),
    }


def clone(prefill: Prefill, root: Path) -> tuple[str, str | None]:
    """A fresh copy of the cached store for one run: (store URL, PostgreSQL database name)."""
    if prefill.kind == "sqlite":
        target = root / "store" / "inspection.db"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(prefill.source, target)
        return f"sqlite:///{target}", None
    name = create_database(template=prefill.source)
    return database_url(name), name


# ------------------------------------------------------------------------- the station
@dataclass
class Station:
    """The scratch line and an HTTP server (``serve``) on its store, and the demo images."""

    line: ScratchLine
    store_url: str
    product: str
    token: str
    port: int
    images: list[np.ndarray]
    serve: Child | None = None

    @property
    def root(self) -> Path:
        return self.line.work

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_healthy(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.serve is None or self.serve.process.poll() is not None:
                raise RuntimeError(f"serve exited; see {self.root / 'serve.log'}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("serve not healthy")

    def rss_mb(self, name: str) -> float:
        return round(sum(p.memory_info().rss for p in self._tree(name)) / 1e6, 1)

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds so far: serve, the line station, this process (HTTP clients, soft PLC)
        and the waited-for children (every finished prune run)."""
        own, children = psutil.Process().cpu_times(), resource.getrusage(resource.RUSAGE_CHILDREN)
        return {
            name: sum(p.cpu_times().user + p.cpu_times().system for p in self._tree(name))
            for name in ("serve", "line")
        } | {"bench": own.user + own.system, "prune": children.ru_utime + children.ru_stime}

    def _tree(self, name: str) -> list[psutil.Process]:
        child = self.serve if name == "serve" else self.line.station
        process = psutil.Process(child.process.pid)  # type: ignore[union-attr]
        return [process, *process.children(recursive=True)]

    def part_png(self, n: int) -> bytes:
        """A demo image with its first pixel set from ``n``: every part a distinct blob, as on
        a line (identical bytes would be stored once)."""
        image = self.images[n % len(self.images)].copy()
        image[0, 0] = (n & 255, (n >> 8) & 255, (n >> 16) & 255)
        return cv2.imencode(".png", image)[1].tobytes()

    @property
    def camera_file(self) -> Path:
        return self.root / "camera" / "part.png"


def prepare(args: argparse.Namespace, line: ScratchLine, store_url: str) -> tuple[Station, Path]:
    """``station.yaml`` (HTTP) and ``line.yaml`` (PLC; returned) on one store in the scratch
    line, a station token, the camera folder and the demo images."""
    core = line.core(args.registry, [args.product], store_url=store_url,
                     inference_threads=args.inference_threads)  # fmt: skip
    port = free_port()
    station = {"core": core, "host": "127.0.0.1", "port": port, "workers": 1}
    (line.work / "station.yaml").write_text(yaml.safe_dump(station), encoding="utf-8")
    paths = demo_test_images(
        Path(args.workdir) / "datasets", args.product, seed=11, good=8, per_defect=2,
        size=args.image_size,
    )  # fmt: skip
    images = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths]
    store = Store.migrated(store_url, line.work / "blobs")
    token, _ = create_token(store, "soak-http", "soak")
    store.engine.dispose()
    made = Station(line, store_url, args.product, token, port, images)
    made.camera_file.parent.mkdir()
    cv2.imwrite(str(made.camera_file), images[0])
    config = line.config(core, made.camera_file.parent, opcua=line.opcua(10.0),
                         default_product=args.product, warm_on_trigger={"enabled": False})  # fmt: skip
    return made, config


# ------------------------------------------------------------------------- the drivers
@dataclass
class Log:
    """Parts handed out and what each path saw: request id -> answer, latencies, errors."""

    total: int
    deadline: float = float("inf")
    """``time.monotonic()`` after which no more parts are handed out."""
    handed: int = 0
    http: dict[str, str] = field(default_factory=dict)
    """HTTP request id -> inspection id."""
    plc: dict[str, str] = field(default_factory=dict)
    """PLC request id -> verdict."""
    http_ms: list[float] = field(default_factory=list)
    plc_ms: list[float] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_part(self) -> int | None:
        with self.lock:
            if self.handed >= self.total or time.monotonic() > self.deadline:
                return None
            self.handed += 1
            return self.handed - 1

    def count(self, key: str) -> None:
        with self.lock:
            self.events[key] = self.events.get(key, 0) + 1

    @property
    def acked(self) -> int:
        return len(self.http) + len(self.plc)


def http_client(station: Station, log: Log) -> None:
    """Send parts until none are left; a failed request is retried with its request id."""
    headers = {"Authorization": f"Bearer {station.token}", "Content-Type": "image/png"}
    with httpx.Client(base_url=station.base_url, timeout=30.0) as client:
        while (n := log.next_part()) is not None:
            request_id = f"http-{n}"
            image = station.part_png(n)
            params = {"product": station.product, "request_id": request_id, "part_id": request_id}
            while True:
                started = time.perf_counter()
                try:
                    response = client.post("/v1/inspect", params=params, content=image,
                                           headers=headers)  # fmt: skip
                except httpx.HTTPError as exc:
                    log.count(f"http {type(exc).__name__}")
                    time.sleep(0.5)
                    continue
                if response.status_code in (200, 201):
                    with log.lock:
                        log.http[request_id] = response.json()["id"]
                        log.http_ms.append((time.perf_counter() - started) * 1000.0)
                    break
                log.count(f"http {response.status_code}")
                time.sleep(0.5)


def plc_driver(station: Station, log: Log) -> None:
    """The PLC's cycle for each part: a new image in the camera, then the handshake (an
    unanswered trigger is retried with the same RequestId, as a PLC does)."""
    plc = station.line.plc
    while (n := log.next_part()) is not None:
        request_id = f"plc-{n}"
        scratch = station.camera_file.with_suffix(".tmp")
        scratch.write_bytes(station.part_png(n))
        os.replace(scratch, station.camera_file)
        while True:
            try:
                answer = plc.trigger(
                    request_id=request_id, product=station.product, part_id=request_id,
                    timeout_s=15.0,
                )  # fmt: skip
            except HandshakeTimeout:
                log.count("plc handshake timeout")
                plc.write("Trigger", False)
                time.sleep(0.5)
                continue
            if answer.result in (ResultCode.OK, ResultCode.NG):
                with log.lock:
                    log.plc[request_id] = answer.result.name
                    log.plc_ms.append(answer.seconds * 1000.0)
            else:
                log.count(f"plc error {answer.error_code.name}")
            break


class Pruner(threading.Thread):
    """``inspection store prune`` as its own process every ``every`` seconds; keeps each
    run's JSON report."""

    def __init__(self, station: Station, every: float) -> None:
        super().__init__(daemon=True)
        self.station, self.every = station, every
        self.runs: list[dict[str, Any]] = []
        self.failures = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        config = self.station.root / "station.yaml"
        report = self.station.root / "prune.json"
        while not self._stop_event.wait(self.every):
            started = time.perf_counter()
            done = subprocess.run(
                [*CLI, "store", "prune", "--config", str(config), "--report", str(report)],
                cwd=REPO, capture_output=True, text=True, check=False,
            )  # fmt: skip
            self.failures += done.returncode != 0
            if done.returncode == 0:
                run = json.loads(report.read_text())
                keep = ("stripped", "rows_deleted", "outbox_deleted", "files_removed", "blob_files")
                self.runs.append({k: run[k] for k in keep} | {
                    "wall_s": round(time.perf_counter() - started, 1),
                    "used_mb": round(run["used_bytes"] / 1e6, 1),
                })  # fmt: skip
            else:
                print(done.stderr[-2000:], flush=True)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


# ------------------------------------------------------------------------- measuring
def sample(
    station: Station, log: Log, since: tuple[int, int], cpu: dict[str, float]
) -> dict[str, Any]:
    """One window: latency per path since ``since`` (indexes into the latency lists), CPU ms
    per part since the ``cpu`` seconds (``Station.cpu_s``), both processes' RSS, disk, rows,
    load average."""
    store = Store(station.store_url, station.root / "blobs")
    try:
        with store.session() as session:
            rows = int(session.scalar(select(func.count()).select_from(Inspection)) or 0)
        blobs = sum(size for _sha, size in store.blobs.files())
        db = database_bytes(store) or 0
    finally:
        store.engine.dispose()
    with log.lock:
        http, plc = log.http_ms[since[0] :], log.plc_ms[since[1] :]
    window = {
        "parts": log.acked,
        "at_s": 0.0,
        "http_n": len(http),
        "plc_n": len(plc),
        "rss_http_mb": station.rss_mb("serve"),
        "rss_line_mb": station.rss_mb("line"),
        "disk_mb": round((blobs + db) / 1e6, 1),
        "blob_mb": round(blobs / 1e6, 1),
        "rows": rows,
        "load": load_average(),
    }
    parts = max(1, len(http) + len(plc))
    window["cpu_ms_per_part"] = {
        name: round((seconds - cpu[name]) * 1000 / parts, 1)
        for name, seconds in station.cpu_s().items()
    }
    for name, values in (("http", http), ("plc", plc)):
        array = np.asarray(values or [np.nan])
        window[f"{name}_p50_ms"] = round(float(np.percentile(array, 50)), 1)
        window[f"{name}_p99_ms"] = round(float(np.percentile(array, 99)), 1)
    return window


def soak(station: Station, args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    """HTTP clients and the PLC share out ``args.parts`` (as many as ``seconds`` allow); a
    sample every ``args.window``."""
    log = Log(args.parts, time.monotonic() + seconds)
    drivers = [(http_client, (station, log))] * args.clients + [(plc_driver, (station, log))]
    threads = [threading.Thread(target=target, args=a) for target, a in drivers]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    windows: list[dict[str, Any]] = []
    since, cpu = (0, 0), station.cpu_s()
    while any(t.is_alive() for t in threads) or log.acked > sum(since):
        time.sleep(0.5)
        finished = not any(t.is_alive() for t in threads)
        if log.acked >= (len(windows) + 1) * args.window or finished:  # the last may be short
            window = sample(station, log, since, cpu)
            cpu = station.cpu_s()
            window["at_s"] = round(time.perf_counter() - started, 1)
            since = (since[0] + window["http_n"], since[1] + window["plc_n"])
            windows.append(window)
            print(f"  {window}", flush=True)
    return {"windows": windows, "log": log, "seconds": time.perf_counter() - started}


def verify(station: Station, log: Log) -> dict[str, Any]:
    """Lost (acknowledged, not stored), duplicated and rows pointing at a missing blob."""
    store = Store(station.store_url, station.root / "blobs")
    columns = (Inspection.id, Inspection.request_id, Inspection.part_id, Inspection.image_sha,
               Inspection.map_sha, Inspection.mask_sha, Inspection.overlay_sha,
               Inspection.blobs_pruned_at)  # fmt: skip
    soak_parts = Inspection.part_id.like("http-%") | Inspection.part_id.like("plc-%")
    try:
        with store.session() as session:
            rows = list(session.execute(select(*columns).where(soak_parts)))
        present = {sha for sha, _size in store.blobs.files()}
    finally:
        store.engine.dispose()
    by_part: dict[str, list[str]] = {}
    dangling = 0
    for row in rows:
        by_part.setdefault(row.part_id, []).append(row.id)
        shas = [row.map_sha, row.mask_sha, row.overlay_sha]
        shas += [row.image_sha] if row.blobs_pruned_at is None else []
        dangling += sum(1 for sha in shas if sha and sha not in present)
    lost_http = sum(1 for rid, iid in log.http.items() if iid not in by_part.get(rid, []))
    lost_plc = sum(1 for rid in log.plc if rid not in by_part)
    return {
        "acknowledged_http": len(log.http),
        "acknowledged_plc": len(log.plc),
        "lost": lost_http + lost_plc,
        "duplicated": sum(1 for ids in by_part.values() if len(ids) > 1),
        "rows_pointing_at_missing_blobs": dangling,
        "soak_rows": len(rows),
        "soak_rows_without_blobs": sum(1 for r in rows if r.blobs_pruned_at is not None),
    }


# ------------------------------------------------------------------------- one store
def retention_config(args: argparse.Namespace, prefill: Prefill) -> dict[str, Any]:
    """Accelerated blob and outbox windows; a row window ending at the oldest pre-filled row
    now, so rows age out at the pre-fill's rate while the soak runs."""
    minutes = args.blob_minutes / 1440
    row_days = (datetime.now(timezone.utc) - prefill.oldest).total_seconds() / 86400 - 1e-4
    row_days = max(row_days, 3 * minutes)  # a short pre-fill: rows at least as long as blobs
    return {
        "default": {"blob_days": minutes, "kept_blob_days": 3 * minutes, "row_days": row_days},
        "outbox_days": minutes,
        "grace_minutes": args.blob_minutes / 2,
        "disk_budget_gb": args.budget_gb,
    }


def run_store(
    kind: str, prefill: Prefill, args: argparse.Namespace, seconds: float
) -> dict[str, Any]:
    """One store's soak: its pre-fill cloned, the station up, the parts, the check after."""
    line = ScratchLine(Path(args.workdir) / f"soak-{kind}")
    started = time.perf_counter()
    store_url, pg_name = clone(prefill, line.work)
    span_h = (prefill.newest - prefill.oldest).total_seconds() / 3600
    head = {"store": kind, "prefill_rows": prefill.rows, "prefill_span_h": round(span_h, 2),
            "prefill_build_s": prefill.build_seconds,
            "clone_s": round(time.perf_counter() - started, 1)}  # fmt: skip
    station, config = prepare(args, line, store_url)
    retention = retention_config(args, prefill)
    (line.work / "retention.yaml").write_text(yaml.safe_dump(retention), encoding="utf-8")
    pruner = Pruner(station, args.prune_every)
    env = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    try:
        station.serve = Child(["serve", "--config", str(line.work / "station.yaml")],
                              line.work / "serve.log", **env)  # fmt: skip
        line.start(config, **env)
        station.wait_healthy()
        pruner.start()
        run = soak(station, args, seconds)
    finally:
        pruner.stop() if pruner.is_alive() else None
        if station.serve is not None:
            station.serve.stop(timeout=60)
        line.close()
    try:
        verification = verify(station, run["log"])
    finally:
        if pg_name is not None:
            drop_database(pg_name)
    windows, log = run["windows"], run["log"]
    warm, last = windows[min(1, len(windows) - 1)], windows[-1]
    return head | {
        "retention": retention,
        "parts": log.acked,
        "seconds": round(run["seconds"], 1),
        "windows": windows,
        "rss_growth_after_warmup": {
            p: round(last[f"rss_{p}_mb"] / warm[f"rss_{p}_mb"] - 1, 4) for p in ("http", "line")
        },
        "p99_end_over_start": {
            p: round(last[f"{p}_p99_ms"] / warm[f"{p}_p99_ms"], 2) for p in ("http", "plc")
        },
        "prune_runs": pruner.runs,
        "prune_failures": pruner.failures,
        "events": log.events,
        "verification": verification,
    }


# ------------------------------------------------------------------------- report
def markdown(report: dict[str, Any]) -> str:
    run = report["run"]
    v, rss, p99 = run["verification"], run["rss_growth_after_warmup"], run["p99_end_over_start"]
    blob_mb = [w["blob_mb"] for w in run["windows"][1:]] or [0]
    rate = run["parts"] / run["seconds"]
    prunes = run["prune_runs"]
    cut = [f"**Cut short** at {run['parts']:,} of the {report['parts_requested']:,} parts asked "
           f"for, to end by {report['end_by']} UTC (`--end-by`).", ""]  # fmt: skip
    must_show = [
        ("RSS growth after warm-up (window 2 -> last)",
         f"HTTP {rss['http']:.1%}, line {rss['line']:.1%}"),
        ("p99 last / window 2", f"HTTP {p99['http']}x, PLC {p99['plc']}x"),
        ("lost / duplicated", f"{v['lost']} / {v['duplicated']}"),
        ("rows pointing at a missing blob", v["rows_pointing_at_missing_blobs"]),
        ("blobs held (steady state, windows 2..last)", f"{min(blob_mb)}-{max(blob_mb)} MB; soak "
         f"rows already stripped: {v['soak_rows_without_blobs']:,} of {v['soak_rows']:,}"),
        ("store rows first -> last window",
         f"{run['windows'][0]['rows']:,} -> {run['windows'][-1]['rows']:,}"),
        ("client events", run["events"] or "none"),
    ]  # fmt: skip
    lines = [
        f"# Soak on {run['store']} (bench/soak.py)",
        "",
        f"Command: `{report['command']}` (commit {report['commit']})",
        "",
        f"CPU: {report['cpu']}; load at start {report['load_before']}, end {report['load_after']} "
        "(per window below; it counts the soak's own processes: clients, serve, line station, "
        "soft PLC, prune runs and the database server).",
        "",
        f"Bundle `{report['bundle']}`; {run['parts']:,} parts in {run['seconds']} s "
        f"(**{rate:.1f} parts/s**, so 200,000 parts take {200_000 / rate / 3600:.2f} h per "
        f"store; {report.get('image_size', '?')} px images) "
        f"({v['acknowledged_http']:,} over HTTP from {report['clients']} clients, "
        f"{v['acknowledged_plc']:,} over the PLC handshake: OPC UA SignAndEncrypt, results "
        f"signed and delivered to TLS MQTT) against {run['prefill_rows']:,} pre-filled results "
        f"({run['prefill_span_h']} h at the pre-fill rate, rollups rebuilt; built in "
        f"{run['prefill_build_s']} s, cloned in {run['clone_s']} s).",
        "",
        *(cut if run["parts"] < report["parts_requested"] else []),
        f"Retention: `{json.dumps(run['retention'])}`; prune every {report['prune_every']} s "
        f"as its own process: {len(prunes)} runs, {run['prune_failures']} failed, wall "
        f"{min((p['wall_s'] for p in prunes), default=0)}-"
        f"{max((p['wall_s'] for p in prunes), default=0)} s; rows deleted "
        f"{sum(p['rows_deleted'] for p in prunes):,}, rows stripped of blobs "
        f"{sum(p['stripped'] for p in prunes):,}, files removed "
        f"{sum(p['files_removed'] for p in prunes):,}.",
        "",
        *table(("must show", "result"), must_show),
        "",
        "CPU ms per part: serve (HTTP), line station (PLC path: inspection, OPC UA client, "
        "signing, outbox to MQTT), bench (HTTP clients and the soft PLC's OPC UA server), "
        "prune runs.",
        "",
        *window_table(run["windows"]),
    ]
    return "\n".join(lines) + "\n"


def window_table(windows: list[dict[str, Any]]) -> list[str]:
    """The per-window table: a row a window that has CPU figures."""
    headers = ("parts", "s", "parts/s", "HTTP p50/p99 ms", "PLC p50/p99 ms",
               "CPU ms/part serve / line / bench / prune", "RSS HTTP/line MB", "disk MB (blobs)",
               "rows", "load")  # fmt: skip
    rows = [(f"{w['parts']:,}", w["at_s"], rate, f"{w['http_p50_ms']} / {w['http_p99_ms']}",
             f"{w['plc_p50_ms']} / {w['plc_p99_ms']}", " / ".join(map(str, cpu.values())),
             f"{w['rss_http_mb']} / {w['rss_line_mb']}", f"{w['disk_mb']} ({w['blob_mb']})",
             f"{w['rows']:,}", w["load"])
            for w, rate in zip(windows, window_rates(windows), strict=True)
            if (cpu := w.get("cpu_ms_per_part", {}))]  # fmt: skip
    return table(headers, rows)


def window_rates(windows: list[dict[str, Any]]) -> list[float]:
    """Parts per second of each window."""
    parts = [0, *(w["parts"] for w in windows)]
    at = [0.0, *(w["at_s"] for w in windows)]
    return [round((parts[i + 1] - parts[i]) / max(at[i + 1] - at[i], 1e-9), 1)
            for i in range(len(windows))]  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", help="Registry with a live bundle (default: train one).")
    parser.add_argument("--product", default="brick")
    parser.add_argument("--stores", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--prefill", type=int, default=200_000)
    parser.add_argument("--prefill-rate", type=float, default=60.0, help="parts/s")
    parser.add_argument("--parts", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=2_000)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument(
        "--inference-threads", type=int, default=1,
        help="OpenVINO threads per inference in serve and the line station (core setting)",
    )  # fmt: skip
    parser.add_argument("--prune-every", type=float, default=30.0)
    parser.add_argument("--blob-minutes", type=float, default=2.0)
    parser.add_argument("--budget-gb", type=float, default=50.0)
    parser.add_argument("--end-by", help="UTC HH:MM: cut every store's soak short to end by then")
    parser.add_argument("--workdir", default="/tmp/inspection-soak")
    parser.add_argument("--out", default=str(REPORTS))
    return parser.parse_args(argv)


def time_share(args: argparse.Namespace, stores_left: int) -> float:
    """Seconds of soak for the next store: an equal share of what is left before
    ``--end-by`` (3 minutes per store kept for start-up, verification and the report)."""
    if not args.end_by:
        return float("inf")
    now = datetime.now(timezone.utc)
    hour, minute = (int(x) for x in args.end_by.split(":"))
    end = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    end += timedelta(days=1) if end < now - timedelta(hours=12) else timedelta()
    return max(60.0, ((end - now).total_seconds() - 180 * stores_left) / stores_left)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    args.registry = args.registry or str(tiny_registry(workdir, args.product, int8=True))
    prefills = {k: prefilled(workdir, k, args.prefill, args.prefill_rate) for k in args.stores}
    for done, kind in enumerate(args.stores):
        with recorded(argv) as env:
            run = run_store(kind, prefills[kind], args, time_share(args, len(args.stores) - done))
        bundle = Registry(args.registry).journal.live_bundle_dir(args.product).name
        options = {k: vars(args)[k] for k in ("clients", "image_size", "end_by", "prune_every")}
        report = env | {"bundle": bundle, "parts_requested": args.parts, **options, "run": run}
        save_report(Path(args.out), f"soak-{kind}", report, markdown(report))
        print(markdown(report), flush=True)


if __name__ == "__main__":
    main()
