"""Line station on the PLC handshake: trigger-to-result latency and a fault run.

One ``inspection station run`` (``_station.ScratchLine``: soft PLC, private Mosquitto) serves
the registry's live bundle on every link of ``--links`` at once, each driven by its PLC side
(``SIDES``), its results collected from an MQTT sink. Each mode (link security on, as the line
defaults to, and ``security: none``) runs:

1. latency: ``--triggers`` per link in ``--rounds`` rounds, the links taking turns; the model's
   own latency from the same results;
2. fault, per link of ``--fault-via``: ``--fault`` triggers while the broker and the station are
   ``kill -9``-ed and restarted, an unanswered trigger retried with its RequestId; stored,
   delivered, lost and duplicated by request id, every delivered signature checked;

3. views (security on): a station per count of ``--views`` cameras per part, trigger to part
   answer. Writes ``reports/line/line.json`` and ``summary.md``.

    python bench/line.py --registry var/registry --product brick --triggers 500 --fault 600
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from functools import partial
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
from _report import recorded, rounds, save_report, table
from _shared import Events, job_args, mes_client
from _station import STATION_ID, ScratchLine, signature_policy
from asyncua import Client, ua
from asyncua.sync import ThreadLoop

from inspection.core.bundle import read_bundle_metadata
from inspection.core.config import to_mapping
from inspection.core.registry import Registry
from inspection.line.config import LinkSecurity
from inspection.line.handshake import ErrorCode
from inspection.line.links import LINKS, register_plcs
from inspection.line.machine_vision import RESULT_READY_EVENT, load_client_types
from inspection.line.machine_vision.access import add_user
from inspection.line.mosquitto import Collector, free_port, wait_port
from inspection.line.payload import PayloadError, ResultPayload
from inspection.line.pki import LinePki
from inspection.line.plc import MqttPlc
from inspection.line.security import station_uri
from inspection.line.softplc import HandshakeTimeout, PlcAnswer, RegisterPlc, SoftPlc

REPORTS = Path(__file__).resolve().parents[1] / "reports" / "line"
Timed = Callable[[str], tuple[float, ...]]


class Side:
    """A link's PLC end in this bench: its station ``section``, ``connect()`` once the station
    is up (-> its timed trigger), ``close()`` after the timed rounds, ``stop()`` at the end."""

    row: str
    section: dict[str, Any]

    def connect(self) -> Timed:
        raise NotImplementedError

    def close(self) -> None:
        """Nothing to close unless a side says so."""

    def stop(self) -> None:
        """Nothing to stop unless a side says so."""


class Handshake(Side):
    """A PLC that raises Trigger and reads Done: the scratch line's soft PLC (OPC UA) or a
    memory-block link's (``LinkKind.plc``); fault runs go through it too."""

    def __init__(self, row: str, plc: SoftPlc | RegisterPlc, section: dict[str, Any]) -> None:
        self.row, self.plc, self.section = row, plc, section

    def connect(self) -> Timed:
        if isinstance(self.plc, RegisterPlc):
            self.plc.connect()
        return self.timed

    def timed(self, request_id: str) -> tuple[float]:
        """Seconds from Trigger raised to Done read; a wrong id or an error ends the bench."""
        answer = self.plc.trigger(request_id=request_id)
        if answer.request_id != request_id or answer.error_code != ErrorCode.NONE:
            raise SystemExit(f"{self.row} PLC: {request_id} answered {answer}")
        return (answer.seconds,)

    def stop(self) -> None:
        if isinstance(self.plc, RegisterPlc):
            self.plc.stop()  # the soft PLC is the scratch line's


def opcua_side(line: ScratchLine, args: argparse.Namespace) -> Handshake:
    return Handshake(
        "opcua", line.plc, line.opcua(args.sampling_ms, heartbeat_ms=args.heartbeat_ms)
    )


def register_side(
    name: str, kind: type[RegisterPlc], line: ScratchLine, args: argparse.Namespace
) -> Handshake:
    """The memory-block PLC in its library's own server, polled every ``--poll-ms`` by the
    station, its Heartbeat counted every ``--heartbeat-ms``."""
    plc = kind(scan_s=args.scan_ms / 1000.0)
    return Handshake(
        name, plc, to_mapping(plc.config(poll_ms=args.poll_ms, heartbeat_ms=args.heartbeat_ms))
    )


class MqttSide(Side):
    """The PLC publishing triggers to the scratch line's broker (``plc.MqttPlc``, kept open)."""

    row = "mqtt"

    def __init__(self, line: ScratchLine, _args: argparse.Namespace) -> None:
        self.line, self.section = line, {"enabled": True, "port": line.broker.port}

    def connect(self) -> Timed:
        self.plc = MqttPlc("127.0.0.1", self.line.broker.port, f"inspection/{STATION_ID}",
                           self.line.security)  # fmt: skip
        return lambda request_id: (self.plc.trigger(request_id)[1],)

    def close(self) -> None:
        self.plc.close()


class VisionMes(Side):
    """A MES on the station's OPC 40100 server (security on: SignAndEncrypt with a CA-signed
    certificate as its X509 user, an engineer; the station's checked against the trust list):
    Operational, the recipe prepared, ResultReady subscribed; each timed trigger a single job
    run in the MES's own loop."""

    row = "opc40100"

    def __init__(self, line: ScratchLine, args: argparse.Namespace) -> None:
        self.port, self.security, self.args = free_port(), line.security, args
        self.section = {"enabled": True, "port": self.port}
        if line.security.on:
            add_user(line.security.pki_dir / "opcua-users.yaml", "mes", "engineer", None)
        else:  # plaintext: no user to check
            self.section["anonymous"] = "engineer"

    def connect(self) -> Timed:
        wait_port(self.port, 60.0)  # the station serves OPC 40100 after it raised Ready
        self.loop = ThreadLoop()
        self.loop.daemon = True  # a bench that fails leaves no thread keeping it alive
        self.loop.start()
        self.loop.post(self._open(f"opc.tcp://127.0.0.1:{self.port}/inspection"))
        return lambda meas_id: self.loop.post(self._job(meas_id))

    async def _open(self, endpoint: str) -> None:
        security = self.security
        plain = Client(endpoint, timeout=10)
        self.client = (
            await mes_client(endpoint, LinePki(security.pki_dir)) if security.on else plain
        )
        await self.client.connect()
        mv = self.mv = await load_client_types(self.client)
        ns = await self.client.get_namespace_index(station_uri(STATION_ID))
        system = await self.client.nodes.objects.get_child(f"{ns}:VisionSystem")
        machine = await system.get_child(f"{mv}:VisionStateMachine")
        self.automatic = await machine.get_child(f"{mv}:AutomaticModeStateMachine")
        self.results = await system.get_child(f"{mv}:ResultManagement")
        recipes = await system.get_child(f"{mv}:RecipeManagement")
        await machine.call_method(f"{mv}:SelectModeAutomatic")
        recipe = ua.RecipeIdExternalDataType(Id=self.args.product)
        await recipes.call_method(f"{mv}:PrepareRecipe", recipe, ua.RecipeIdInternalDataType(Id=""))
        self.events = Events()
        subscription = await self.client.create_subscription(self.args.sampling_ms, self.events)
        await subscription.subscribe_events(system, ua.NodeId(RESULT_READY_EVENT, mv))

    async def _job(self, meas_id: str) -> tuple[float, float]:
        """StartSingleJob -> (seconds to its ResultReady event, to its result read back)."""
        mv, started = self.mv, time.perf_counter()
        await self.automatic.call_method(f"{mv}:StartSingleJob", *job_args(meas_id))
        event = await asyncio.wait_for(self.events.queue.get(), 15)
        at_event = time.perf_counter()
        timeout = ua.Variant(1000, ua.VariantType.Int32)
        _, result, _ = await self.results.call_method(
            f"{mv}:GetResultById", event.ResultId, timeout
        )
        if result.MeasId.Id != meas_id or result.ResultState != 1:  # 1: Completed
            raise SystemExit(f"OPC 40100: job {meas_id} gave {result}")
        return at_event - started, time.perf_counter() - started

    def close(self) -> None:
        self.loop.post(self.client.disconnect())
        self.loop.stop()


SIDES: dict[str, Callable[[ScratchLine, argparse.Namespace], Side]] = {
    "opcua": opcua_side, "machine_vision": VisionMes, "mqtt": MqttSide,
} | {name: partial(register_side, name, kind) for name, kind in register_plcs().items()}  # fmt: skip
"""Each link's PLC side, by link name (the memory-block ones from ``LinkKind.plc``)."""


def timed_id(request_id: str, prefix: str) -> bool:
    """Whether ``request_id`` is a timed round's (``<prefix><round>-<i>``), not a warm-up's."""
    return request_id.startswith(prefix) and request_id[len(prefix) : len(prefix) + 1].isdigit()


def line_config(
    args: argparse.Namespace, line: ScratchLine, links: dict[str, Any],
    views: tuple[str, ...] = (), **more: Any,
) -> Path:  # fmt: skip
    """The station's config: the ``links`` sections, one camera or a view per ``views``
    product (each camera on its product's images), ``core`` keys on top."""
    # absolute: the station runs in its own folder, where datasets/ is not
    images = lambda product: str(Path(args.images or f"datasets/{product}/test").resolve())  # noqa: E731
    core = line.core(args.registry, list({args.product, *views}), **more)
    cameras = {"views": [{"name": f"view{i}", "camera": {"kind": "file", "path": images(product)},
                          "product": product} for i, product in enumerate(views)]} if views else {}  # fmt: skip
    return line.config(core, None if views else images(args.product), default_product=args.product,
                       inspect_timeout_s=5.0, **cameras, **links)  # fmt: skip


def percentiles(values: list[float], rounds: int = 1) -> dict[str, Any]:
    """n, p50, p99 and max in ms; with ``rounds``, each round's p50 (equal slices in order)."""
    ms = np.asarray(values) * 1000.0
    row: dict[str, Any] = {
        "n": len(values),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
    }
    if rounds > 1:
        row["round_p50_ms"] = [round(float(np.median(r)), 2) for r in np.split(ms, rounds)]
    return row


def timed_rounds(args: argparse.Namespace, links: dict[str, tuple[str, Timed]]) -> dict[str, Any]:
    """``args.triggers`` per link in ``args.rounds`` rounds, the links taking turns so that a
    drift of the machine's load spreads over all; request ids ``<prefix><round>-<i>``. A link
    timing two moments (40100: event, result read) gets a ``<name>_result`` row too."""
    per_round = args.triggers // args.rounds
    for prefix, trigger in links.values():
        for i in range(5):  # warm-up, not counted
            trigger(f"{prefix}w-{i}")

    def batch(prefix: str, trigger: Timed, r: int) -> list:
        return [trigger(f"{prefix}{r}-{i}") for i in range(per_round)]

    runs = rounds({name: partial(batch, *link) for name, link in links.items()}, args.rounds)
    return {
        name if k == 0 else f"{name}_result": percentiles(list(column), args.rounds)
        for name, batches in runs.items()
        for k, column in enumerate(zip(*chain.from_iterable(batches), strict=True))
    }


def plc_trigger_retrying(
    plc: SoftPlc | RegisterPlc, request_id: str, retries: list[str]
) -> PlcAnswer:
    """A PLC that gets no Done (its trigger drops Trigger) retries the same RequestId until
    answered."""
    while True:
        try:
            return plc.trigger(request_id=request_id, timeout_s=8.0)
        except HandshakeTimeout:
            retries.append(request_id)
            time.sleep(0.5)


def stored(db: Path, prefix: str) -> list[tuple[str, float]]:
    """(request id, model latency ms) of the station's stored inspections whose request id
    starts with ``prefix``."""
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "select request_id, latency_ms from inspections where request_id like ?",
            (f"{STATION_ID}/{prefix}%",),
        ).fetchall()
    return [(request_id.split("/", 1)[1], ms) for request_id, ms in rows]


def run(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    """Both phases with link security ``mode`` (sign_and_encrypt or none)."""
    with closing(ScratchLine(Path(args.workdir) / mode, mode, args.scan_ms / 1000.0)) as line:
        sides = {name: SIDES[name](line, args) for name in args.links}
        config = line_config(args, line, {name: side.section for name, side in sides.items()})
        results = Collector(line.broker.port, f"inspection/{STATION_ID}/result", line.security)
        try:
            report = {"security": mode, "startup_s": line.start(config)}
            warm = [line.plc.trigger(request_id=f"w-{i}") for i in range(5)]  # not counted
            if all(a.error_code != ErrorCode.NONE for a in warm):
                raise SystemExit(
                    f"line bench: the station judged no part ({warm[-1].error_code.name}: "
                    f"{warm[-1].message}); see {line.work / 'station.log'}"
                )
            timed = {side.row: (f"{name}-", side.connect()) for name, side in sides.items()}
            report["latency"] = timed_rounds(args, timed)
            for side in sides.values():
                side.close()
            plcs = {name: side.plc for name, side in sides.items() if isinstance(side, Handshake)}
            report["fault"] = {name: fault_run(args, line, plcs[name], f"f{name}-", results)
                               for name in args.fault_via}  # fmt: skip
            payloads = [ResultPayload.from_json(m) for m in results.wait_for(0, 0)]
        finally:
            results.close()
            for side in sides.values():
                side.stop()
    timed_payloads = [
        p for p in payloads if any(timed_id(p.request_id, x) for x, _ in timed.values())
    ]
    inference = [p.timings_ms["inference_ms"] / 1000.0 for p in timed_payloads]
    report["latency"]["model"] = percentiles(inference)
    report["latency"]["verdicts"] = dict(Counter(p.verdict for p in timed_payloads))
    report["signatures"] = signature_check(payloads, line.security)
    return report


def views_run(args: argparse.Namespace, count: int) -> dict[str, Any]:
    """``args.triggers`` OPC UA triggers (security on) to a station judging each part from
    ``count`` views: trigger to part answer, and each view's model latency."""
    products = tuple(args.view_products[:count])
    work = Path(args.workdir) / f"views-{count}"
    with closing(ScratchLine(work, scan_s=args.scan_ms / 1000.0)) as line:
        links = {"opcua": line.opcua(args.sampling_ms), "sinks": []}
        line.start(line_config(args, line, links, products))
        for i in range(5):  # warm-up, not counted
            line.plc.trigger(request_id=f"w-{i}")
        answers = [line.plc.trigger(request_id=f"p-{i}") for i in range(args.triggers)]
    rows = stored(line.work / "line.db", "p-")
    return {
        "products": list(products),
        "part": percentiles([a.seconds for a in answers]),
        "errors": sum(a.error_code != ErrorCode.NONE for a in answers),
        "verdicts": dict(Counter(a.result.name for a in answers)),
        "stored_rows": len(rows),
        "model_per_view": percentiles([ms / 1000.0 for _, ms in rows]) if rows else {},
    }


def signature_check(payloads: list[ResultPayload], security: LinkSecurity) -> dict[str, int]:
    """Every delivered result checked with the station's public key, as a MES would."""
    if not security.on:
        return {"checked": 0, "valid": 0, "unsigned": sum(not p.signature for p in payloads)}
    key = LinePki(security.pki_dir).signing_key(STATION_ID).public_key()
    valid = 0
    for payload in payloads:
        try:
            payload.verify(key)
            valid += 1
        except PayloadError:
            pass
    return {"checked": len(payloads), "valid": valid, "unsigned": 0}


def ids_with(prefix: str, messages: list[bytes]) -> Counter[str]:
    """How often each request id starting with ``prefix`` occurs in ``messages``."""
    keys = (ResultPayload.from_json(m).request_id for m in messages)
    return Counter(k for k in keys if k.startswith(prefix))


def fault_run(
    args: argparse.Namespace,
    line: ScratchLine,
    plc: SoftPlc | RegisterPlc,
    prefix: str,
    results: Collector,
) -> dict[str, Any]:
    """``args.fault`` triggers from ``plc`` (request ids ``<prefix><i>``) through broker and
    station kills: stored, delivered, lost, delivered twice (``duplicates``: MQTT messages)
    and handed on twice by the collector after its dedupe by request id."""
    n, station = args.fault, line.station
    faults = {n // 5: ("broker kill -9", line.broker.kill),
              2 * n // 5: ("broker restarted", line.broker.start),
              3 * n // 5: ("station kill -9", lambda: station.kill() or station.start())}  # fmt: skip
    retries: list[str] = []
    events: list[str] = []
    started = time.monotonic()
    for i in range(n):
        if i in faults:
            faults[i][1]()
            events.append(f"{faults[i][0]} before trigger {i}")
        plc_trigger_retrying(plc, f"{prefix}{i:04d}", retries)
    run_s = time.monotonic() - started
    stored_ids = [request_id for request_id, _ in stored(line.work / "line.db", prefix)]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        delivered = ids_with(prefix, results.wait_for(0, 0))
        if set(stored_ids) <= set(delivered):
            break
        time.sleep(1.0)
    drained_s = time.monotonic() - started - run_s
    handed_on = ids_with(prefix, results.handed_on)
    missing = sorted(set(stored_ids) - set(delivered))
    return {
        "triggers": n,
        "events": events,
        "plc_retries": len(retries),
        "stored": len(stored_ids),
        "stored_unique": len(set(stored_ids)),
        "delivered_unique": len(set(delivered)),
        "delivered_messages": sum(delivered.values()),
        "duplicates": sum(c - 1 for c in delivered.values()),
        "duplicate_examples": sorted(k for k, c in delivered.items() if c > 1)[:10],
        "handed_on_twice": sum(c - 1 for c in handed_on.values()),
        "lost": len(missing),
        "missing_examples": missing[:10],
        "answered_all_triggers": len(set(stored_ids)) == n,
        "run_s": round(run_s, 1),
        "drain_after_run_s": round(drained_s, 1),
    }


LABELS = {
    "model": "model alone (preprocess + infer + postprocess)",
    "opcua": "OPC UA client mode: Trigger rises -> Done seen by the PLC",
    "opc40100": "OPC 40100 server mode: StartSingleJob called -> ResultReady event received",
    "opc40100_result": "OPC 40100 server mode: StartSingleJob called -> GetResultById returned",
    "mqtt": "MQTT: trigger published -> answer received",
} | {name: f"{plc.label}: Trigger written -> Done read by the PLC"
     for name, plc in register_plcs().items()}  # fmt: skip
NO_SECURITY = tuple(register_plcs())  # the memory-block protocols have none (docs/security.md)


def latency_rows(runs: dict[str, Any]) -> list[str]:
    rows = []
    for name, label in LABELS.items():
        for mode, run_ in runs.items():
            if name not in run_["latency"]:  # a link --links left out
                continue
            row = run_["latency"][name]
            security = f"none in the protocol (station {mode})" if name in NO_SECURITY else mode
            rounds = " / ".join(map(str, row.get("round_p50_ms", [])))
            rows.append((label, security, row["n"], row["p50_ms"], row["p99_ms"], row["max_ms"],
                         rounds))  # fmt: skip
    headers = ("path", "security", "n", "p50 ms", "p99 ms", "max ms", "p50 per round ms")
    return table(headers, rows)


def views_rows(views: dict[str, Any]) -> list[str]:
    headers = ("views per part", "products", "n", "part p50 ms", "part p99 ms", "max ms",
               "errors", "model per view p50 / p99 ms")  # fmt: skip
    rows = []
    for count, run_ in views.items():
        part, model = run_["part"], run_["model_per_view"]
        rows.append((count, ", ".join(run_["products"]), part["n"], part["p50_ms"],
                     part["p99_ms"], part["max_ms"], run_["errors"],
                     f"{model.get('p50_ms')} / {model.get('p99_ms')}"))  # fmt: skip
    return table(headers, rows)


def write(report: dict[str, Any], args: argparse.Namespace) -> None:
    save_report(REPORTS, "line", report)
    env = report["environment"]
    runs = report["runs"]
    lines = [
        "# Line station: trigger to answer on every PLC link, several cameras per part, "
        "delivery under faults",
        "",
        f"Measured with `{env['command']}` (run alone: `heavy --alone`) at {env['commit']} on "
        f"{env['cpu']}; load (`uptime`) {env['load_before']} before, {env['load_after']} after. "
        f"Bundle `{report['bundle']}` ({report['precision']}) of `{report['product']}`, bundle "
        f"signatures {report['bundle_signatures']}, images {report['images']}. One station "
        f"(`inspection station run` subprocess, SQLite store) serves {', '.join(args.links)}: "
        f"soft PLC = asyncua server (scan {args.scan_ms} ms), subscription publishing interval "
        f"{args.sampling_ms} ms (the PLC's and the MES's), private Mosquitto, S7 and Modbus "
        "blocks in python-snap7's and pymodbus's own servers in the bench process, Logix tags in "
        "cpppo's EtherNet/IP server (a subprocess), each polled by "
        f"the station every {args.poll_ms} ms and by the PLC every {args.scan_ms} ms. Each "
        f"link gets {args.triggers} triggers in {args.rounds} rounds, the links taking turns; "
        "the bench's clients and servers share the machine's 2 cores with the station.",
        "",
        "Security on = `security.mode: sign_and_encrypt`: OPC UA Basic256Sha256 SignAndEncrypt "
        "with CA-signed application certificates checked against a trust list both ways (the "
        "PLC's server and the station's OPC 40100 server alike); MQTT over TLS 1.2 with a "
        "password per user and per-station ACLs; results signed (Ed25519) and each delivered "
        "signature checked here. Security off = `security.mode: none`. S7, Modbus TCP and EtherNet/IP "
        "authenticate and encrypt nothing in either mode. The modes run one after the other "
        "(on first), each with a station of its own; the model alone, which link security does "
        "not touch, differs between them as much as the links do.",
        "",
        "## Trigger to answer, per link",
        "",
        *latency_rows(runs),
        "",
        "## Several cameras per part",
        "",
        f"A station per row, security on, triggered over OPC UA client mode ({args.triggers} "
        "parts each); view i judged as the i-th product listed, each camera on that product's "
        "test images. The same product in several views shares one model (its inferences "
        "take turns); distinct products' models run concurrently on the 2 cores.",
        "",
        *views_rows(report.get("views", {})),
        "",
        "## Fault run",
        "",
    ]
    for mode, run_ in runs.items():
        sig = run_["signatures"]
        lines += [
            f"**security {mode}** (station start-up {run_['startup_s']} s; verdicts in the "
            f"latency runs {run_['latency']['verdicts']}; result signatures valid "
            f"{sig['valid']}/{sig['checked']})",
            "",
        ]
        for name, fault in run_["fault"].items():
            lines += [
                f"- {fault['triggers']} triggers over {LABELS[name].split(':')[0]}; "
                + "; ".join(fault["events"]),
                f"- PLC retries of unanswered triggers (same RequestId): {fault['plc_retries']}",
                f"- stored inspections {fault['stored']} (unique request ids "
                f"{fault['stored_unique']}); delivered to the MES collector: "
                f"{fault['delivered_unique']} unique, {fault['delivered_messages']} messages",
                f"- **lost {fault['lost']}**, delivered twice {fault['duplicates']} (MQTT "
                f"messages by request id), handed on twice after the collector's dedupe "
                f"{fault['handed_on_twice']}",
                f"- run {fault['run_s']} s; outbox drained {fault['drain_after_run_s']} s after the "
                "last trigger",
                "",
            ]
    (REPORTS / "summary.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", default="var/registry")
    parser.add_argument("--product", default="brick")
    parser.add_argument("--images", default=None, help="Camera folder (default: demo test set).")
    parser.add_argument("--triggers", type=int, default=500)
    parser.add_argument("--fault", type=int, default=600)
    parser.add_argument("--fault-via", nargs="*", default=["opcua", "enip"],
                        choices=("opcua", *register_plcs()), help="Links of fault runs.")  # fmt: skip
    parser.add_argument("--links", nargs="+", default=list(LINKS), choices=tuple(LINKS),
                        help="Links the station serves (opcua always).")  # fmt: skip
    parser.add_argument("--sampling-ms", type=float, default=10.0)
    parser.add_argument("--scan-ms", type=float, default=1.0)
    parser.add_argument("--poll-ms", type=float, default=10.0, help="Station's S7/Modbus poll.")
    parser.add_argument(
        "--heartbeat-ms", type=float, default=250.0, help="S7/Modbus/OPC UA Heartbeat."
    )
    parser.add_argument("--rounds", type=int, default=5, help="Links take turns this often.")
    parser.add_argument("--views", type=int, nargs="*", default=[1, 2, 3])
    parser.add_argument("--view-products", type=lambda t: t.split(","), default="brick,brick,brick")
    parser.add_argument("--workdir", default="/tmp/inspection-line-bench")
    parser.add_argument(
        "--security", choices=("both", "on", "off"), default="both", help="Link security runs."
    )
    args = parser.parse_args()
    if "opcua" not in args.links or not set(args.fault_via) <= set(args.links):
        parser.error("--links must hold opcua (Ready, warm-up) and every --fault-via link")
    bundle_dir = Registry(args.registry).journal.live_bundle_dir(args.product)
    modes = {"on": "sign_and_encrypt", "off": "none"}
    chosen = ("on", "off") if args.security == "both" else (args.security,)
    with recorded() as env:
        runs = {name: run(args, modes[name]) for name in chosen}
        views = {str(count): views_run(args, count) for count in args.views}
    report = {
        "runs": runs,
        "views": views,
        "bundle": bundle_dir.name,
        "product": args.product,
        "precision": read_bundle_metadata(bundle_dir).precision,
        "images": args.images or f"datasets/{args.product}/test",
        "bundle_signatures": "checked against the site key"
        if "signing_keys" in signature_policy(args.registry)
        else "not checked (the source registry's site has no key)",
        "environment": env,
    }
    write(report, args)
    print((REPORTS / "summary.md").read_text())


if __name__ == "__main__":
    main()
