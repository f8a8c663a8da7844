"""Line station on the PLC handshake: trigger-to-result latency and a fault run.

A real ``inspection station run`` (subprocess) serves the registry's live bundle, driven by a
soft PLC (asyncua server in this process) and by MQTT triggers through a private Mosquitto;
its results go to an MQTT sink that a collector reads. Phases:

1. latency: N triggers over OPC UA (PLC raises Trigger -> sees Done), N over MQTT (trigger
   published -> answer received); the model's own latency from the same results.
2. fault: M triggers over OPC UA while the broker is ``kill -9``-ed and restarted and the
   station is ``kill -9``-ed once and restarted; the PLC retries an unanswered trigger with
   the same RequestId. Every stored inspection's result must reach the collector at least
   once; duplicates are counted by request id.

Both phases run twice: with the line links secured (the default: OPC UA Basic256Sha256
SignAndEncrypt with certificates and a trust list, MQTT over TLS with passwords and ACLs,
results signed, every delivered signature checked) and with ``security: none``.

Writes ``reports/line/line.json`` and ``reports/line/summary.md``.

    python bench/line.py --registry var/registry --product brick --triggers 300 --fault 300
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import yaml
from _report import cpu_description, load_average, save_report
from _station import CLI, serve_live_copy, signature_policy  # scratch-station helpers
from asyncua import Client
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from inspection.core.bundle import read_bundle_metadata  # noqa: E402
from inspection.core.registry import Registry  # noqa: E402
from inspection.line.config import LinkSecurity  # noqa: E402
from inspection.line.handshake import Answer, ErrorCode  # noqa: E402
from inspection.line.mosquitto import Broker, Collector, free_port  # noqa: E402
from inspection.line.payload import PayloadError, ResultPayload  # noqa: E402
from inspection.line.pki import LinePki  # noqa: E402
from inspection.line.security import PLC_USER, mqtt_client, station_uri  # noqa: E402
from inspection.line.softplc import HandshakeTimeout, SoftPlc  # noqa: E402

REPORTS = ROOT / "reports" / "line"
STATION_ID = "bench-1"


class Station:
    """``inspection station run`` as a subprocess that can be killed and restarted."""

    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.config_path = config_path
        self.log = log_path.open("ab")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = os.environ | {"PYTHONPATH": str(ROOT)}
        command = [*CLI, "station", "run", "-c", str(self.config_path)]
        self.process = subprocess.Popen(command, stdout=self.log, stderr=self.log, env=env)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()  # SIGKILL
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)


class MqttPlc:
    """Triggers over MQTT and the answers, matched by request id."""

    def __init__(self, port: int, security: LinkSecurity) -> None:
        self.prefix = f"inspection/{STATION_ID}"
        self.answers: dict[str, tuple[Answer, float]] = {}
        self._cv = threading.Condition()
        self.client = mqtt_client(security, PLC_USER)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"{self.prefix}/answer", qos=1)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, message: Any) -> None:
        answer = Answer.from_json(message.payload)
        with self._cv:
            self.answers[answer.request_id] = (answer, time.perf_counter())
            self._cv.notify_all()

    def trigger(self, request_id: str, timeout_s: float = 15.0) -> tuple[Answer, float]:
        started = time.perf_counter()
        payload = json.dumps({"request_id": request_id})
        self.client.publish(f"{self.prefix}/trigger", payload, qos=1)
        with self._cv:
            if not self._cv.wait_for(lambda: request_id in self.answers, timeout_s):
                raise HandshakeTimeout(f"no MQTT answer to {request_id}")
            answer, at = self.answers[request_id]
        return answer, at - started


def prepare(
    args: argparse.Namespace, work: Path, broker_port: int, endpoint: str, security: LinkSecurity
) -> Path:
    serve_live_copy(args.registry, args.product, work / "registry", "line bench")
    config = {
        "station_id": STATION_ID,
        "core": {
            "products": [args.product],
            "store_url": f"sqlite:///{work / 'line.db'}",
            "blob_dir": str(work / "blobs"),
            "registry_dir": str(work / "registry"),
        }
        | signature_policy(args.registry),
        "inspect_timeout_s": 5.0,
        "camera": {
            "kind": "file",
            "path": str(Path(args.images or f"datasets/{args.product}/test")),
        },
        "opcua": {"enabled": True, "endpoint": endpoint, "sampling_ms": args.sampling_ms},
        "mqtt": {"enabled": True, "port": broker_port},
        "sinks": [{"name": "mes", "kind": "mqtt", "port": broker_port, "timeout_s": 2.0}],
        "publisher": {"poll_s": 0.2, "backoff_initial_s": 0.2, "backoff_max_s": 2.0},
        "security": {"mode": security.mode, "pki_dir": str(security.pki_dir)},
    }
    path = work / "line.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def percentiles(values: list[float]) -> dict[str, float]:
    ms = np.asarray(values) * 1000.0
    return {
        "n": len(values),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
    }


def wait_ready(plc: SoftPlc, timeout_s: float = 120.0) -> float:
    started = time.monotonic()
    plc.wait_for("Ready", True, timeout_s)
    return time.monotonic() - started


def plc_trigger_retrying(plc: SoftPlc, request_id: str, retries: list[str]) -> None:
    """A PLC that gets no Done retries the same RequestId until answered."""
    while True:
        try:
            plc.trigger(request_id=request_id, timeout_s=8.0)
            return
        except HandshakeTimeout:
            retries.append(request_id)
            plc.write("Trigger", False)
            time.sleep(0.5)


def stored_request_ids(db: Path, prefix: str) -> list[str]:
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "select request_id from inspections where request_id like ?",
            (f"{STATION_ID}/{prefix}%",),
        ).fetchall()
    return [r[0].split("/", 1)[1] for r in rows]


def run(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    """Both phases with link security ``mode`` (sign_and_encrypt or none)."""
    work = Path(args.workdir) / mode
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    security = LinkSecurity(mode=mode, pki_dir=work / "pki")  # type: ignore[arg-type]
    broker = Broker(work, persistent=True, security=security, stations=(STATION_ID,))
    broker.start()
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/plc"
    plc = SoftPlc(endpoint, security=security, scan_s=args.scan_ms / 1000.0)
    plc.start()
    config_path = prepare(args, work, broker.port, endpoint, security)
    results = Collector(broker.port, f"inspection/{STATION_ID}/result", security)
    station = Station(config_path, work / "station.log")
    station.start()
    startup_s = wait_ready(plc)
    mqtt_plc = MqttPlc(broker.port, security)
    report: dict[str, Any] = {"security": mode, "startup_s": round(startup_s, 2)}
    try:
        report["outsiders"] = {
            "mqtt_anonymous_fake_answer": forged_answer(broker.port, security, mqtt_plc),
            "opcua_untrusted_client": untrusted_opcua(plc.endpoint, security, work),
        }
        warm = [plc.trigger(request_id=f"w-{i}") for i in range(5)]  # warm-up, not counted
        if all(a.error_code != ErrorCode.NONE for a in warm):
            raise SystemExit(
                f"line bench: the station judged no part ({warm[-1].error_code.name}: "
                f"{warm[-1].message}); see {work / 'station.log'}"
            )
        opcua = [plc.trigger(request_id=f"o-{i}").seconds for i in range(args.triggers)]
        over_mqtt = [mqtt_plc.trigger(f"m-{i}")[1] for i in range(args.triggers)]
        report["latency"] = {"opcua": percentiles(opcua), "mqtt": percentiles(over_mqtt)}
        report["fault"] = fault_run(args, work, plc, broker, station, results)
        payloads = [ResultPayload.from_json(m) for m in results.wait_for(0, 0)]
        inference = [
            p.timings_ms["inference_ms"] / 1000.0
            for p in payloads
            if p.request_id.startswith(("o-", "m-"))
        ]
        report["latency"]["model"] = percentiles(inference)
        verdicts = Counter(p.verdict for p in payloads if p.request_id.startswith(("o-", "m-")))
        report["latency"]["verdicts"] = dict(verdicts)
        report["signatures"] = signature_check(payloads, security)
    finally:
        station.stop()
        results.close()
        plc.stop()
        broker.kill()
    return report


def forged_answer(port: int, security: LinkSecurity, plc: MqttPlc) -> str:
    """An MQTT client without credentials publishes an "OK" answer for the station: what the
    PLC sees."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    if security.on:
        client.tls_set(ca_certs=str(LinePki(security.pki_dir).ca_file))
    connack: list[str] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: connack.append(str(reason))
    client.connect("127.0.0.1", port)
    client.loop_start()
    deadline = time.monotonic() + 5
    while not connack and time.monotonic() < deadline:
        time.sleep(0.01)
    if connack[:1] == ["Success"]:
        fake = Answer("forged-1", 0, product="x", verdict="OK", score=0.0).to_json()
        client.publish(f"{plc.prefix}/answer", fake, qos=1).wait_for_publish(5)
        time.sleep(1.0)
    client.disconnect()
    client.loop_stop()
    if "forged-1" in plc.answers:
        return "DELIVERED to the PLC"
    return f"refused (CONNACK: {connack[0] if connack else 'none'})"


def untrusted_opcua(endpoint: str, security: LinkSecurity, work: Path) -> str:
    """An OPC UA client whose certificate the site CA did not sign (no certificate at all
    when security is off, as a plaintext client) reads the PLC's server state."""

    async def attempt() -> str:
        client = Client(endpoint, timeout=5)
        if security.on:
            rogue = LinePki(work / "rogue").identity("station-x", station_uri("x"))
            client.application_uri = rogue.uri
            await client.set_security(
                SecurityPolicyBasic256Sha256, str(rogue.certificate), str(rogue.private_key)
            )
        async with client:
            await client.nodes.server_state.read_value()
        return "CONNECTED and read the PLC"

    try:
        return asyncio.run(attempt())
    except Exception as exc:  # asyncua raises its status codes as many types
        return f"refused ({type(exc).__name__}: {str(exc)[:80]})"


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


def fault_run(
    args: argparse.Namespace,
    work: Path,
    plc: SoftPlc,
    broker: Broker,
    station: Station,
    results: Collector,
) -> dict[str, Any]:
    n = args.fault
    retries: list[str] = []
    events: list[str] = []
    started = time.monotonic()
    for i in range(n):
        if i == n // 5:
            broker.kill()
            events.append(f"broker kill -9 before trigger {i}")
        if i == 2 * n // 5:
            broker.start()
            events.append(f"broker restarted before trigger {i}")
        if i == 3 * n // 5:
            station.kill()
            events.append(f"station kill -9 before trigger {i}")
            station.start()
        plc_trigger_retrying(plc, f"f-{i:04d}", retries)
    run_s = time.monotonic() - started
    stored = stored_request_ids(work / "line.db", "f-")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        keys = [ResultPayload.from_json(m).request_id for m in results.wait_for(0, 0)]
        delivered = Counter(k for k in keys if k.startswith("f-"))
        if set(stored) <= set(delivered):
            break
        time.sleep(1.0)
    drained_s = time.monotonic() - started - run_s
    missing = sorted(set(stored) - set(delivered))
    return {
        "triggers": n,
        "events": events,
        "plc_retries": len(retries),
        "stored": len(stored),
        "stored_unique": len(set(stored)),
        "delivered_unique": len(set(delivered)),
        "delivered_messages": sum(delivered.values()),
        "duplicates": sum(c - 1 for c in delivered.values()),
        "lost": len(missing),
        "missing_examples": missing[:10],
        "answered_all_triggers": len(set(stored)) == n,
        "run_s": round(run_s, 1),
        "drain_after_run_s": round(drained_s, 1),
    }


LABELS = {
    "model": "model alone (preprocess + infer + postprocess)",
    "opcua": "OPC UA: Trigger rises -> Done seen by the PLC",
    "mqtt": "MQTT: trigger published -> answer received",
}


def write(report: dict[str, Any], args: argparse.Namespace) -> None:
    save_report(REPORTS, "line", report)
    env = report["environment"]
    runs = report["runs"]
    lines = [
        "# Line station: PLC handshake latency and delivery under faults, security on and off",
        "",
        f"Measured with `{report['command']}` on {env['cpu']} (load "
        f"{env['load_before']} before, {env['load_after']} after). Bundle `{report['bundle']}` "
        f"({report['precision']}) of `{report['product']}`, bundle signatures "
        f"{report['bundle_signatures']}, images {report['images']}, soft PLC "
        f"= asyncua server (scan {args.scan_ms} ms), subscription publishing interval "
        f"{args.sampling_ms} ms, private Mosquitto, station = `inspection station run` "
        "subprocess, SQLite store.",
        "",
        "Security on = `security.mode: sign_and_encrypt`: OPC UA Basic256Sha256 SignAndEncrypt "
        "with CA-signed application certificates checked against a trust list both ways; MQTT "
        "over TLS 1.2 with a password per user and per-station ACLs; results signed (Ed25519) "
        "and each delivered signature checked here. Security off = `security.mode: none`.",
        "",
        "## Trigger to result",
        "",
        "| path | security | n | p50 ms | p99 ms | max ms |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, label in LABELS.items():
        for mode, run_ in runs.items():
            row = run_["latency"][name]
            lines.append(
                f"| {label} | {mode} | {row['n']} | {row['p50_ms']} | {row['p99_ms']} | "
                f"{row['max_ms']} |"
            )
    lines += ["", "## Outsiders", "", "| attempt | security | outcome |", "| --- | --- | --- |"]
    for mode, run_ in runs.items():
        outsiders = run_["outsiders"]
        lines += [
            f"| MQTT client without credentials publishes an OK answer | {mode} | "
            f"{outsiders['mqtt_anonymous_fake_answer']} |",
            f"| OPC UA client without a trusted certificate | {mode} | "
            f"{outsiders['opcua_untrusted_client']} |",
        ]
    lines += ["", "## Fault run", ""]
    for mode, run_ in runs.items():
        fault, sig = run_["fault"], run_["signatures"]
        lines += [
            f"**security {mode}** (station start-up {run_['startup_s']} s; verdicts in the "
            f"latency runs {run_['latency']['verdicts']}; result signatures valid "
            f"{sig['valid']}/{sig['checked']})",
            "",
            f"- {fault['triggers']} triggers over OPC UA; " + "; ".join(fault["events"]),
            f"- PLC retries of unanswered triggers (same RequestId): {fault['plc_retries']}",
            f"- stored inspections {fault['stored']} (unique request ids "
            f"{fault['stored_unique']}); delivered to the MES collector: "
            f"{fault['delivered_unique']} unique, {fault['delivered_messages']} messages",
            f"- **lost {fault['lost']}**, duplicates {fault['duplicates']} (by request id)",
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
    parser.add_argument("--sampling-ms", type=float, default=10.0)
    parser.add_argument("--scan-ms", type=float, default=1.0)
    parser.add_argument("--workdir", default="/tmp/inspection-line-bench")
    parser.add_argument(
        "--security", choices=("both", "on", "off"), default="both", help="Link security runs."
    )
    args = parser.parse_args()
    load_before = load_average()
    bundle_dir = Registry(args.registry).live_bundle_dir(args.product)
    modes = {"on": "sign_and_encrypt", "off": "none"}
    chosen = ("on", "off") if args.security == "both" else (args.security,)
    report = {
        "runs": {name: run(args, modes[name]) for name in chosen},
        "bundle": bundle_dir.name,
        "product": args.product,
        "precision": read_bundle_metadata(bundle_dir).precision,
        "images": args.images or f"datasets/{args.product}/test",
        "bundle_signatures": "checked against the site key"
        if "signing_keys" in signature_policy(args.registry)
        else "not checked (the source registry's site has no key)",
        "command": " ".join(["python", *sys.argv]),
        "environment": {
            "cpu": cpu_description(),
            "load_before": load_before,
            "load_after": load_average(),
        },
    }
    write(report, args)
    print((REPORTS / "summary.md").read_text())


if __name__ == "__main__":
    main()
