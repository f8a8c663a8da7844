"""Many stations forwarding to one central PostgreSQL: ingest, lag, and kill -9 of either side.

Each station is a process of its own with its own local SQLite store and blob folder: it writes
synthetic results through the station's store path (the blob, then the row and its ``central``
outbox message in one transaction, as ``station.pipeline`` does; no model, so the CPU measured
is the forwarding's, not inference's) and runs the real ``Forwarder`` thread, as its own
PostgreSQL role (``grant_station``), into a PostgreSQL of the bench's own (``initdb``).

- ``scale``: every station first holds ``--backlog`` results; all forwarders start at once and
  the central ingest (rows/s) is timed until every backlog is empty; then every station writes
  ``--rate`` parts/s for ``--steady-s`` s: central ingest and each station's lag (a result's
  commit to its forwarded mark) at steady state.
- ``kill``: every station writes ``--rate`` parts/s for ``--steady-s`` s; every ``--kill-every``
  s, in turn, a station whose batch is open centrally is killed (``kill -9``, restarted a second
  later) or the postmaster is (``kill -9``, restarted); then the backlogs drain and every local
  result is looked up centrally: lost, duplicated, rollup totals.

    python bench/stations.py --mode scale
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from _report import cpu_description, load_average, previous_report, save_report
from _station import ScratchPostgres, _admin

from inspection.line.mosquitto import free_port
from inspection.store.forward import Forwarder, backlog, central_entry, grant_station
from inspection.store.store import Store

REPORTS = Path(__file__).resolve().parents[1] / "reports" / "plant"
WARM_S = 15.0
"""Seconds of the steady phase not counted: the station processes start."""
OPEN_BATCHES = (
    "SELECT usename FROM pg_stat_activity WHERE usename LIKE 'line-%' AND xact_start IS NOT NULL "
    "AND query NOT LIKE '%station_backlog%'"
)
"""The stations' sessions inside a batch's transaction (not a backlog report's)."""


def station(args: argparse.Namespace) -> None:
    """One station process: write ``--rate`` parts/s (``--parts`` in all, 0: none) and forward."""
    local = Store.migrated(f"sqlite:///{args.local}/local.db", Path(args.local) / "blobs")
    forwarder = None
    if args.central:
        forwarder = Forwarder(local, args.central, Path(args.central_blobs))
        forwarder.start()
    start, first = time.monotonic(), local.count_inspections()
    rng = np.random.default_rng()
    for i in range(first, first + args.parts):
        if args.rate:
            time.sleep(max(0.0, start + (i - first) / args.rate - time.monotonic()))
        image = rng.bytes(args.blob_kb * 1024)
        key = f"{args.station}/p{i:07d}"
        score = float(rng.random())
        local.add_inspection(
            outbox=[central_entry(key, len(image))], request_id=key, product="brick",
            station_id=args.station, score=score, threshold=0.5,
            verdict="NG" if score > 0.5 else "OK", model_version="brick/v0001",
            bundle_id="v0001", latency_ms=30.0, width=256, height=256,
            image_sha=local.blobs.put(image, ".png"),
        )  # fmt: skip
    if forwarder is not None:
        while True:  # forward until killed
            time.sleep(1.0)


class Plant:
    """The central PostgreSQL, its owner's store, and ``n`` station processes."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.work = args, Path(args.workdir)
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        self.pg = ScratchPostgres(self.work / "pg", free_port()).init()
        self.start_pg()
        _admin(self.pg.url(), "CREATE ROLE inspection LOGIN CREATEROLE PASSWORD 'inspection'")
        _admin(self.pg.url(), "CREATE DATABASE inspection OWNER inspection")
        owner_url = self.pg.url("inspection", "inspection", "inspection")
        self.owner = Store.migrated(owner_url, self.work / "central")
        self.names = [f"line-{i:02d}" for i in range(args.stations)]
        self.urls = {}
        for name in self.names:
            password = grant_station(self.owner, name)
            self.urls[name] = owner_url.replace("inspection:inspection@", f"{name}:{password}@")
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.locals: dict[str, Store] = {}
        self.samples: list[tuple[float, int]] = []

    def start_pg(self) -> float:
        """Start the server; after a ``kill -9`` its orphans may hold shared memory a moment."""
        began = time.monotonic()
        for _ in range(120):
            try:
                self.pg.start()
                return time.monotonic() - began
            except subprocess.CalledProcessError:
                time.sleep(0.5)
        raise RuntimeError("the central PostgreSQL did not start again")

    def postmaster(self) -> int:
        return int((self.pg.data_dir / "data" / "postmaster.pid").read_text().split()[0])

    def kill_pg(self) -> None:
        os.kill(self.postmaster(), signal.SIGKILL)

    def pg_cpu_s(self) -> float:
        """CPU seconds used so far by the postmaster and its live children (the backends)."""
        tick, total, parent = os.sysconf("SC_CLK_TCK"), 0.0, self.postmaster()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if stat.parent.name == str(parent) or fields[1] == str(parent):
                total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def launch(self, name: str, rate: float, parts: int, forward: bool = True) -> None:
        command = [
            sys.executable,
            __file__,
            "--station",
            name,
            "--local",
            str(self.work / name),
            "--rate",
            str(rate),
            "--parts",
            str(parts),
            "--blob-kb",
            str(self.args.blob_kb),
        ]
        if forward:
            command += ["--central", self.urls[name], "--central-blobs", str(self.work / "central")]
        self.procs[name] = subprocess.Popen(command)  # fmt: skip

    def kill(self, name: str) -> None:
        self.procs.pop(name).send_signal(signal.SIGKILL)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.kill(name)
            time.sleep(0)

    def central_rows(self) -> int:
        with self.owner.engine.connect() as connection:
            return connection.scalar(sa.text("SELECT count(*) FROM inspections"))

    def local(self, name: str) -> Store:
        if name not in self.locals:
            url = f"sqlite:///{self.work / name}/local.db"
            self.locals[name] = Store(url, self.work / name / "blobs")
        return self.locals[name]

    def waiting(self) -> int:
        return sum(backlog(self.local(name)).rows for name in self.names)

    def drained(self, timeout_s: float, parts: int = 0) -> float:
        """Seconds until every station wrote ``parts`` results and its backlog is empty."""
        began = time.monotonic()
        while time.monotonic() - began < timeout_s and (
            self.waiting() or any(self.local(n).count_inspections() < parts for n in self.names)
        ):
            self.watch(0.5)
        self.samples.append((time.monotonic(), self.central_rows()))
        return time.monotonic() - began

    def watch(self, seconds: float) -> None:
        """Sample the central row count every half second for ``seconds``."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.samples.append((time.monotonic(), self.central_rows()))
            time.sleep(max(0.0, min(0.5, end - time.monotonic())))

    def ingest(self, start: float, end: float) -> float:
        """Central rows per second between two sampled times."""
        window = [(t, n) for t, n in self.samples if start <= t <= end]
        (t0, n0), (t1, n1) = window[0], window[-1]
        return (n1 - n0) / (t1 - t0)


def scale(plant: Plant, args: argparse.Namespace) -> dict[str, Any]:
    for name in plant.names:  # the backlogs, written with nothing forwarding
        plant.launch(name, 0, args.backlog, forward=False)
    for proc in plant.procs.values():
        proc.wait()
    plant.procs.clear()
    cpu = plant.pg_cpu_s()
    for name in plant.names:
        plant.launch(name, 0, 0)
    plant.drained(args.timeout_s)
    cpu = plant.pg_cpu_s() - cpu  # before the stations' backends end
    plant.stop_all()
    rows = plant.central_rows()
    first = next(t for t, n in plant.samples if n > 0)  # from the first row seen to the last
    last = next(t for t, n in plant.samples if n >= rows)
    drain = {"rows": rows, "seconds": round(last - first, 1),
             "rows_per_s": round(plant.ingest(first, last)),
             "postgres_cpu_ms_per_row": round(1000 * cpu / rows, 3)}  # fmt: skip
    began, parts = time.monotonic(), args.backlog + int(args.rate * args.steady_s)
    for name in plant.names:
        plant.launch(name, args.rate, parts - args.backlog)
    plant.watch(args.steady_s)
    plant.drained(120, parts)
    plant.stop_all()
    warm = time.time() - (time.monotonic() - began) + WARM_S
    return {
        "drain": drain,
        "steady": {
            "rate_per_station": args.rate, "seconds": args.steady_s, "warm_s": WARM_S,
            "rows_per_s": round(plant.ingest(began + WARM_S, began + args.steady_s), 1),
            "lag": {name: station_lag(plant.local(name), warm) for name in plant.names},
        },
    }  # fmt: skip


def station_lag(local: Store, since: float) -> dict[str, float]:
    """Seconds from a result's local commit to its forwarded mark, for results after ``since``."""
    query = sa.text(
        "SELECT created_at, delivered_at FROM outbox_messages WHERE sink = 'central' "
        "AND delivered_at IS NOT NULL"
    )
    with local.engine.connect() as connection:
        pairs = [(_ts(a), _ts(b)) for a, b in connection.execute(query)]
    lag = np.array([b - a for a, b in pairs if a >= since])
    return {"n": len(lag), "p50_s": round(float(np.percentile(lag, 50)), 2),
            "p99_s": round(float(np.percentile(lag, 99)), 2), "max_s": round(float(lag.max()), 2)}  # fmt: skip


def _ts(value: Any) -> float:
    value = datetime.fromisoformat(str(value)) if not isinstance(value, datetime) else value
    return value.replace(tzinfo=value.tzinfo or timezone.utc).timestamp()


def kill(plant: Plant, args: argparse.Namespace) -> dict[str, Any]:
    parts = int(args.rate * args.steady_s)
    for name in plant.names:
        plant.launch(name, args.rate, parts)
    began, kills, turn = time.monotonic(), [], 0
    while time.monotonic() - began < args.steady_s - args.kill_every:
        time.sleep(args.kill_every)
        kills.append(kill_one(plant, args, "station" if turn % 2 == 0 else "postmaster"))
        turn += 1
    time.sleep(max(0.0, began + args.steady_s - time.monotonic()))
    settled = time.monotonic()
    drain_s = plant.drained(args.timeout_s, parts)
    time.sleep(2)
    plant.stop_all()
    return {"rate_per_station": args.rate, "seconds": args.steady_s, "kills": kills,
            "drain_after_s": round(drain_s, 1), "ended_s": round(settled - began, 1)} | audit(plant)  # fmt: skip


def kill_one(plant: Plant, args: argparse.Namespace, victim: str) -> dict[str, Any]:
    """Kill ``victim`` as soon as a station's batch is open centrally (within 5 s)."""
    deadline, open_batches = time.monotonic() + 5, []
    superuser = sa.create_engine(plant.pg.url(), isolation_level="AUTOCOMMIT")  # all sessions
    with superuser.connect() as connection:
        while not open_batches and time.monotonic() < deadline:
            open_batches = list(connection.scalars(sa.text(OPEN_BATCHES)))
            time.sleep(0.005)
    superuser.dispose()
    plant.owner.engine.dispose()
    at = {"victim": victim, "open_batches": len(open_batches)}
    if victim == "postmaster":
        plant.kill_pg()
        time.sleep(1.0)
        return at | {"restart_s": round(plant.start_pg(), 1)}
    name = open_batches[0] if open_batches else plant.names[0]
    plant.kill(name)
    time.sleep(1.0)
    left = int(args.rate * args.steady_s) - plant.local(name).count_inspections()
    plant.launch(name, args.rate, max(0, left))
    return at | {"station": name}


def audit(plant: Plant) -> dict[str, Any]:
    """Every local result of every station looked up centrally."""
    local_keys: set[str] = set()
    for name in plant.names:
        with plant.local(name).engine.connect() as connection:
            local_keys |= set(connection.scalars(sa.text("SELECT request_id FROM inspections")))
    with plant.owner.engine.connect() as connection:
        central = list(connection.scalars(sa.text("SELECT request_id FROM inspections")))
        rollup = connection.scalar(sa.text("SELECT sum(total) FROM rollup_hourly"))
    return {"local_results": len(local_keys), "central_rows": len(central),
            "lost": len(local_keys - set(central)), "duplicated": len(central) - len(set(central)),
            "rollup_total": rollup}  # fmt: skip


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Stations forwarding to one central PostgreSQL", "", HOW, ""]
    if "scale" in report:
        run, drain, steady = report["scale"], report["scale"]["drain"], report["scale"]["steady"]
        lines += [
            f"## Ingest and lag: `{run['command']}`", "", _where(run), "",
            f"- **Central ingest, all {run['stations']} forwarders at once**: {drain['rows']} "
            f"results ({run['blob_kb']} kB blob each) in {drain['seconds']} s: "
            f"**{drain['rows_per_s']} results/s**. PostgreSQL's own processes used "
            f"{drain['postgres_cpu_ms_per_row']} ms of CPU per result (the rest of the two cores "
            "went to the eight forwarders, which a plant runs on its line PCs).",
            f"- **Steady state**, {run['stations']} stations x {steady['rate_per_station']:g} "
            f"parts/s for {steady['seconds']:g} s (the first {steady['warm_s']:g} s not counted): "
            f"central ingest **{steady['rows_per_s']} results/s**; each station's lag, a "
            "result's local commit to its forwarded mark:", "",
            "| station | results | p50 s | p99 s | max s |", "| --- | ---: | ---: | ---: | ---: |",
            *(f"| {name} | {lag['n']} | {lag['p50_s']} | {lag['p99_s']} | {lag['max_s']} |"
              for name, lag in steady["lag"].items()),
        ]  # fmt: skip
    if "kill" in report:
        run = report["kill"]
        kills = run["kills"]
        caught = sum(k["open_batches"] > 0 for k in kills)
        restarts = [k["restart_s"] for k in kills if "restart_s" in k]
        lines += [
            "", f"## kill -9 mid-batch: `{run['command']}`", "", _where(run), "",
            f"{run['stations']} stations x {run['rate_per_station']:g} parts/s for "
            f"{run['seconds']:g} s; {len(kills)} kills, in turn a station process whose batch "
            f"was open centrally and the postmaster ({caught} of {len(kills)} with a batch "
            "open, read from `pg_stat_activity` just before the kill); the postmaster "
            f"restarted in {min(restarts, default=0)}-{max(restarts, default=0)} s.", "",
            f"- **{run['local_results']} results committed locally, {run['central_rows']} "
            f"central rows: lost {run['lost']}, duplicated {run['duplicated']}**; the central "
            f"rollups count {run['rollup_total']}",
            f"- every station's parts written and every backlog empty {run['drain_after_s']} s "
            f"after the run's {run['seconds']:g} s",
        ]  # fmt: skip
    return "\n".join([*lines, "", *report.get("notes", []), ""])


HOW = (
    "Each station is a process of its own with its own SQLite store and blob folder; it "
    "writes synthetic results through the station's store path (blob, row and `central` "
    "outbox message in one local transaction; no model: eight inference processes would "
    "measure inference's CPU, not forwarding) and runs the real `Forwarder` (batch 200, "
    "idle poll 1 s) as its own PostgreSQL role with row-level security, into a PostgreSQL 15 "
    "of the bench's own on the same machine (`bench/stations.py`)."
)


def _where(run: dict[str, Any]) -> str:
    env = run["environment"]
    return f"{env['cpu']}; load {env['load_before']} before, {env['load_after']} after."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("scale", "kill"), default="scale")
    parser.add_argument("--stations", type=int, default=8)
    parser.add_argument("--rate", type=float, default=10.0, help="Parts/s per station.")
    parser.add_argument("--backlog", type=int, default=3000, help="scale: results per station.")
    parser.add_argument("--steady-s", type=float, default=120.0)
    parser.add_argument("--kill-every", type=float, default=15.0)
    parser.add_argument("--blob-kb", type=int, default=20)
    parser.add_argument("--timeout-s", type=float, default=600.0)
    parser.add_argument("--workdir", default="/tmp/inspection-stations-bench")
    for internal in ("--station", "--local", "--central", "--central-blobs"):
        parser.add_argument(internal, help=argparse.SUPPRESS)
    parser.add_argument("--parts", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.station:
        return station(args)
    report = previous_report(REPORTS, "stations")
    load_before = load_average()
    plant = Plant(args)
    try:
        result = (scale if args.mode == "scale" else kill)(plant, args)
    finally:
        plant.stop_all()
        plant.pg.stop()
    report[args.mode] = result | {
        "command": " ".join(["python", "bench/stations.py", *sys.argv[1:]]),
        "stations": args.stations, "blob_kb": args.blob_kb,
        "environment": {"cpu": cpu_description(), "load_before": load_before,
                        "load_after": load_average()},
    }  # fmt: skip
    save_report(REPORTS, "stations", report, markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
