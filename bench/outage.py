"""Line station with the central store down: PLC answers and forwarding through an outage.

The line bench's station (security on) forwards to a central PostgreSQL of the bench's own
(``ScratchPostgres``) through a TCP relay; OPC UA triggers ``--pace`` s apart; from
``--outage-at`` the central side fails for ``--outage-s`` s (``stop``: ``pg_ctl stop -m fast``
then start; ``blackhole``: the relay passes no byte, as a failed network). Recorded: answer
p50/p99 before, during and after, lost and duplicated central rows, and the drain after
recovery. Writes ``reports/line/outage.json`` and ``outage.md``.

    python bench/outage.py --registry var/registry --product brick --scenario both
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from _report import previous_report, recorded, save_report, table
from _station import STATION_ID, ScratchLine, ScratchPostgres, _admin
from line import line_config, percentiles, plc_trigger_retrying

from inspection.line.handshake import ErrorCode
from inspection.line.mosquitto import free_port
from inspection.line.pki import LinePki
from inspection.line.softplc import SoftPlc
from inspection.store.central_roles import grant_station
from inspection.store.store import Store

REPORTS = Path(__file__).resolve().parents[1] / "reports" / "line"


class Relay:
    """A TCP relay from a free port to 127.0.0.1:``target`` in its own thread; while
    ``paused`` no byte crosses and new connections wait, as behind a failed network."""

    def __init__(self, target: int) -> None:
        self.port, self.target, self.paused = free_port(), target, False
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._serve, args=(ready,), daemon=True).start()
        ready.wait(10)

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", self.port))
        ready.set()
        self.loop.run_forever()

    async def _hold(self) -> None:
        while self.paused:
            await asyncio.sleep(0.05)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._hold()
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._hold()
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:  # the server is stopped: refused, as a client would see it
            writer.close()
            return
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))


def tls(pg: ScratchPostgres, pki_dir: Path) -> Path:
    """Give ``pg`` a server certificate for 127.0.0.1 from a site CA made by the project's PKI
    (as ``scripts/services.sh`` does); returns the CA file stations verify it against."""
    pki = LinePki(pki_dir)
    identity = pki.identity("postgres", "urn:inspection:central-postgres", server=True)
    data = pg.data_dir / "data"
    for source, name in (
        (identity.certificate, "server.crt"),
        (identity.private_key, "server.key"),
    ):
        shutil.copy(source, data / name)
        os.chmod(data / name, 0o600)
        if os.geteuid() == 0:
            shutil.chown(data / name, "postgres", "postgres")
    with open(data / "postgresql.conf", "a", encoding="utf-8") as conf:
        conf.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
    return pki.ca_file


def central_site(work: Path) -> tuple[ScratchPostgres, Relay, str, Path]:
    """The central PostgreSQL (TLS, migrated, owned by a non-superuser ``inspection`` role)
    and the station's own forwarding role; returns the server, its relay, the station's URL
    and the CA file its link verifies the server against (``sslmode=verify-full``)."""
    pg = ScratchPostgres(work.parent / f"{work.name}-pg", free_port()).init()  # work is 0700
    ca_file = tls(pg, work.parent / f"{work.name}-pg-tls")
    pg.start()
    _admin(pg.url(), "CREATE ROLE inspection LOGIN CREATEROLE PASSWORD 'inspection'")
    _admin(pg.url(), "CREATE DATABASE inspection OWNER inspection")
    owner_url = f"{pg.url('inspection', 'inspection', 'inspection')}?sslrootcert={ca_file}"
    owner = Store.migrated(owner_url, work / "central")
    password = grant_station(owner, STATION_ID)  # as `inspection db station-role` does
    owner.engine.dispose()
    relay = Relay(pg.port)
    url = f"postgresql+psycopg://{STATION_ID}:{password}@127.0.0.1:{relay.port}/inspection"
    return pg, relay, url, ca_file


class Watch:
    """Every second: the station's local backlog and the central rows of this run."""

    def __init__(self, local_db: Path, central_url: str, prefix: str) -> None:
        self.local_db, self.prefix, self.samples = local_db, prefix, []
        self.engine = sa.create_engine(central_url, connect_args={"connect_timeout": 2})
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def central_ids(self) -> list[str]:
        query = sa.text("SELECT request_id FROM inspections WHERE request_id LIKE :p")
        with self.engine.connect() as connection:
            return list(connection.scalars(query, {"p": f"{STATION_ID}/{self.prefix}%"}))

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            with sqlite3.connect(self.local_db, timeout=5) as local:
                backlog = local.execute(
                    "SELECT count(*) FROM outbox_messages "
                    "WHERE sink = 'central' AND delivered_at IS NULL"
                ).fetchone()[0]
            try:
                central: int | None = len(self.central_ids())
            except sa.exc.SQLAlchemyError:  # the server is down: its own outage
                central = None
            self.samples.append((time.monotonic(), backlog, central))

    def stop(self) -> None:
        self._stop.set()
        self.engine.dispose()


def scenario(args: argparse.Namespace, name: str) -> dict[str, Any]:
    line = ScratchLine(Path(args.workdir) / name, scan_s=args.scan_ms / 1000.0)
    work, plc = line.work, line.plc
    pg, relay, station_url, ca_file = central_site(work)
    central = {"url": station_url, "blob_dir": str(work / "central"), "ca_file": str(ca_file)}
    links = {
        "opcua": line.opcua(args.sampling_ms),
        "mqtt": {"enabled": True, "port": line.broker.port},
    }
    try:
        line.start(line_config(args, line, links, central=central))
        watch = Watch(work / "line.db", pg.url("inspection"), "p-")
        for i in range(5):  # warm-up, not counted
            plc.trigger(request_id=f"w-{i}")
        pause = lambda paused: lambda: setattr(relay, "paused", paused)  # noqa: E731
        outage = {"stop": (pg.stop, pg.start), "blackhole": (pause(True), pause(False))}
        run = drive(args, plc, *outage[name])
        start = run.pop("start")
        deadline = time.monotonic() + args.drain_timeout_s
        while time.monotonic() < deadline and len(watch.central_ids()) < args.triggers:
            time.sleep(0.5)
        run["events_s"]["all_central"] = round(time.monotonic() - start, 2)
        time.sleep(1.5)
        central = watch.central_ids()
    finally:
        line.close()
        pg.stop()
    watch.stop()
    samples = [(t - start, backlog, rows) for t, backlog, rows in watch.samples]
    triggered = {f"{STATION_ID}/p-{i:04d}" for i in range(args.triggers)}
    up = run["events_s"]["up"]
    at_up = run["events_s"]["answered_at_recovery"]
    drained = next((t for t, _, c in samples if t >= up and c is not None and c >= at_up), None)
    return run | {
        "central_rows": len(central), "central_unique": len(set(central)),
        "lost": len(triggered - set(central)), "duplicated": len(central) - len(set(central)),
        "max_backlog_rows": max((b for _, b, _ in samples), default=0),
        "backlog_at_recovery": next((b for t, b, _ in reversed(samples) if t < up), None),
        "drain_s": None if drained is None else round(drained - up, 1),
    }  # fmt: skip


def drive(
    args: argparse.Namespace, plc: SoftPlc, fail: Callable[[], None], recover: Callable[[], None]
) -> dict[str, Any]:
    """The paced triggers, the outage (``fail()`` ... ``recover()``) from ``--outage-at`` for
    ``--outage-s`` seconds; answer seconds and errors per phase."""
    seconds: dict[str, list[float]] = {"before": [], "during": [], "after": []}
    errors = dict.fromkeys(seconds, 0)
    retries: list[str] = []
    events: dict[str, Any] = {}
    start = time.monotonic()
    for i in range(args.triggers):
        time.sleep(max(0.0, start + i * args.pace - time.monotonic()))
        if "down" not in events and time.monotonic() - start >= args.outage_at:
            events["down"] = round(time.monotonic() - start, 2)
            fail()
        ended = time.monotonic() - start >= args.outage_at + args.outage_s
        if "down" in events and "up" not in events and ended:
            events["up"] = round(time.monotonic() - start, 2)
            recover()
            events["answered_at_recovery"] = i
        phase = "before" if "down" not in events else "during" if "up" not in events else "after"
        answer = plc_trigger_retrying(plc, f"p-{i:04d}", retries)
        seconds[phase].append(answer.seconds)
        errors[phase] += answer.error_code != ErrorCode.NONE
    events["last_trigger"] = round(time.monotonic() - start, 2)
    before = percentiles(seconds["before"])
    during = percentiles(seconds["during"])
    return {
        "start": start, "triggers": args.triggers, "pace_s": args.pace, "events_s": events,
        "latency": {phase: percentiles(v) for phase, v in seconds.items() if v},
        "ratio_during_before": {k: round(during[k] / before[k], 2) for k in ("p50_ms", "p99_ms")},
        "error_answers": errors, "plc_retries": len(retries),
    }  # fmt: skip


def markdown(report: dict[str, Any]) -> str:
    rows = [(name, phase, *(row[k] for k in ("n", "p50_ms", "p99_ms", "max_ms")),
             run["error_answers"][phase])
            for name, run in report["runs"].items() for phase, row in run["latency"].items()]  # fmt: skip
    lines = [
        "# Line station with the central store down: PLC answers and store and forward",
        "",
        *(
            f"- {name}: `{run['command']}` on {run['environment']['cpu']} (load "
            f"{run['environment']['load_before']} before, {run['environment']['load_after']} after)"
            for name, run in report["runs"].items()
        ),
        "",
        "Station = `inspection station run` subprocess (bundle and set-up of `bench/line.py`, security on: OPC UA "
        "Basic256Sha256 SignAndEncrypt), local SQLite store, `core.central` = a PostgreSQL 15 "
        "of the bench's own (`initdb`, `pg_ctl`) as the station's role "
        "(`grant_station`, row-level security), through a TCP relay. The forwarder's batch is "
        "200 and it retries with a backoff to 30 s. The machine was shared with other work.",
        "",
        *table(("scenario", "phase", "n", "p50 ms", "p99 ms", "max ms", "error answers"), rows),
    ]
    for name, run in report["runs"].items():
        ev, ratio = run["events_s"], run["ratio_during_before"]
        lines += [
            "",
            f"**{name}** ({SCENARIOS[name]}): {run['triggers']} triggers {run['pace_s']} s "
            f"apart; central down at {ev.get('down')} s, back at {ev.get('up')} s "
            f"(outage {round(ev['up'] - ev['down'], 1) if 'up' in ev else '?'} s); last "
            f"trigger at {ev['last_trigger']} s.",
            "",
            *([f"- `inspection db upgrade`: {run['upgrade']}"] if "upgrade" in run else []),
            f"- during / before: p50 x{ratio['p50_ms']}, p99 x{ratio['p99_ms']} (target <= 1.1)",
            f"- error answers {sum(run['error_answers'].values())}; PLC retries (no answer in 8 "
            f"s) {run['plc_retries']}",
            f"- central store: {run['central_rows']} rows of this run, {run['central_unique']} "
            f"unique request ids: **lost {run['lost']}, duplicated {run['duplicated']}**",
            f"- backlog: {run['backlog_at_recovery']} results waiting at recovery (max "
            f"{run['max_backlog_rows']}); every part answered before recovery central "
            f"**{run['drain_s']} s** after it (this includes the forwarder's retry backoff)",
        ]
    return "\n".join([*lines, *report.get("notes", []), ""])


SCENARIOS = {
    "stop": "`pg_ctl stop -m fast`, later `pg_ctl start`",
    "blackhole": "the relay passes no byte and new connections hang",
    # a recorded run only (module docstring)
    "migrate": "`inspection db upgrade` of the central store, taken back to an older revision",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", default="var/registry")
    parser.add_argument("--product", default="brick")
    parser.add_argument("--images", default=None, help="Camera folder (default: demo test set).")
    parser.add_argument("--scenario", choices=("stop", "blackhole", "both"), default="both")
    parser.add_argument("--triggers", type=int, default=600)
    parser.add_argument("--pace", type=float, default=1.0, help="Seconds between triggers.")
    parser.add_argument("--outage-at", type=float, default=150.0, help="Seconds into the run.")
    parser.add_argument("--outage-s", type=float, default=300.0)
    parser.add_argument("--drain-timeout-s", type=float, default=300.0)
    parser.add_argument("--sampling-ms", type=float, default=10.0)
    parser.add_argument("--scan-ms", type=float, default=1.0)
    parser.add_argument("--workdir", default="/tmp/inspection-outage-bench")
    args = parser.parse_args()
    report = previous_report(REPORTS, "outage")
    report.setdefault("runs", {})
    for name in ("stop", "blackhole") if args.scenario == "both" else (args.scenario,):
        with recorded() as env:
            run = scenario(args, name)
        report["runs"][name] = run | {"command": env.pop("command"), "environment": env}
        save_report(REPORTS, "outage", report, markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
