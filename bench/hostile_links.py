"""Hostile PLC links: reused request ids, a killed station, a wrong data block (issues #66, #80).

A real ``inspection station run`` (subprocess) serves S7 and Modbus TCP (blocks in
python-snap7's and pymodbus's own servers here), EtherNet/IP (cpppo's server, pylogix), the OPC
UA client handshake (the soft PLC), MQTT (a private Mosquitto) and OPC 40100 (an asyncua MES,
anonymous as engineer), security off (the cases are about the handshake, not the wire).
Products ``brick`` and ``grass`` are the same tiny PatchCore, brick at threshold 0.3, grass at
0.999 (OK unless a defect's score saturates at 1.0); a stored row names the product that
judged it. The camera
serves defective parts only. Each case is attempted as a PLC would; the station's own
store says whether a part was captured and stored.

``--before`` runs the station from another checkout too (``git worktree add /tmp/before-links
<commit>``): its ``PYTHONPATH``, this checkout's PLC side; the cases run on both and write
``reports/plant/hostile_links.md`` and ``.json``.

    python bench/hostile_links.py --before /tmp/before-links
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from asyncua import Client, ua

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._report import recorded, save_report  # noqa: E402
from bench._station import Child, demo_test_images, tiny_registry  # noqa: E402
from inspection.core.config import to_mapping  # noqa: E402
from inspection.core.registry import Registry  # noqa: E402
from inspection.line.config import PLC_USER, LinkSecurity  # noqa: E402
from inspection.line.enip import EnipPlc  # noqa: E402
from inspection.line.handshake import Answer  # noqa: E402
from inspection.line.machine_vision.model import RESULT_READY_EVENT, load_client_types  # noqa: E402
from inspection.line.mosquitto import Broker, free_port  # noqa: E402
from inspection.line.security import mqtt_client  # noqa: E402
from inspection.line.softplc import ModbusPlc, RegisterPlc, S7Plc, SoftPlc  # noqa: E402

REPORTS = ROOT / "reports" / "plant"
STATION_ID = "hl-1"
OFF = LinkSecurity(mode="none")
LINE_RATE = {"s7": 50, "enip": 20}  # triggers back to back with one constant request id
HEARTBEAT_AT = 208  # the Heartbeat's byte offset in the register map


def registry(work: Path) -> Path:
    """brick and grass live: one tiny PatchCore, brick at 0.3 and grass at 0.999."""
    source = Registry(tiny_registry(work, "brick")).journal.live_bundle_dir("brick")
    target = Registry(work / "registry")
    for product, threshold in (("brick", 0.3), ("grass", 0.999)):
        bundle = shutil.copytree(source, work / f"{product}-bundle", dirs_exist_ok=True)
        metadata = json.loads((bundle / "metadata.json").read_text())
        (bundle / "metadata.json").write_text(json.dumps(metadata | {"product": product}))
        target.bundles.add_bundle(product, bundle, source.name)
        target.journal.promote(product, source.name, actor="bench", reason="hostile links")
        target.journal.set_threshold(
            product, threshold, actor="bench", reason="hostile links", sign=False
        )
    return work / "registry"


def camera(work: Path) -> Path:
    """Defective parts only: brick judges each NG, grass OK."""
    images = demo_test_images(work / "images", "brick", seed=5, good=1, per_defect=4, size=128)
    folder = work / "camera"
    folder.mkdir(exist_ok=True)
    for n, image in enumerate(p for p in images if p.parent.name != "good"):
        shutil.copy(image, folder / f"{n:03d}.png")
    return folder


def station_config(work: Path, links: dict[str, Any]) -> Path:
    """A line config with ``links`` sections only (keys every station version knows)."""
    config = {
        "station_id": STATION_ID,
        "core": {"products": ["brick", "grass"], "store_url": f"sqlite:///{work / 'line.db'}",
                 "blob_dir": str(work / "blobs"), "registry_dir": str(work / "registry"),
                 "allow_unsigned_bundles": True},
        "camera": {"kind": "file", "path": str(work / "camera")},
        "security": {"mode": "none", "pki_dir": str(work / "pki")},
    } | links  # fmt: skip
    path = work / "line.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start(work: Path, tree: Path, links: dict[str, Any], log: str) -> Child:
    config = station_config(work, links)
    env = {"PYTHONPATH": str(tree), "PYTHONSAFEPATH": "1"}  # not the working directory first
    return Child(["station", "run", "-c", str(config)], work / log, **env)


def rows(work: Path, request_id: str) -> list[tuple[str, str, str | None, str]]:
    """(stored key, product, part id, verdict) of every row under a client's request id."""
    with sqlite3.connect(work / "line.db") as db:
        return db.execute(
            "select request_id, product, part_id, verdict from inspections where request_id = ?"
            " or request_id like ? order by created_at",
            (f"{STATION_ID}/{request_id}", f"{STATION_ID}/{request_id}~%"),
        ).fetchall()


class MqttPlc:
    """Triggers over MQTT, answers matched by request id (one in flight)."""

    def __init__(self, port: int) -> None:
        self.answers: list[Answer] = []
        self.got = threading.Condition()
        self.client = mqtt_client(OFF, PLC_USER)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"inspection/{STATION_ID}/answer", qos=1)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, message: Any) -> None:
        with self.got:
            self.answers.append(Answer.from_json(message.payload))
            self.got.notify_all()

    def trigger(self, request_id: str, product: str, part_id: str) -> dict[str, Any]:
        count, started = len(self.answers), time.perf_counter()
        body = {"request_id": request_id, "product": product, "part_id": part_id or None}
        self.client.publish(f"inspection/{STATION_ID}/trigger", json.dumps(body), qos=1)
        with self.got:
            if not self.got.wait_for(lambda: len(self.answers) > count, 15):
                raise TimeoutError(f"no MQTT answer to {request_id}")
            answer = self.answers[count]
        ms = (time.perf_counter() - started) * 1000
        return {"verdict": answer.verdict, "error": answer.error_code, "ms": round(ms, 1)}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


Trigger = Callable[[str, str, str], dict[str, Any]]


def plc_trigger(plc: SoftPlc | RegisterPlc) -> Trigger:
    def trigger(request_id: str, product: str, part_id: str) -> dict[str, Any]:
        answer = plc.trigger(request_id=request_id, product=product, part_id=part_id)
        return {"verdict": {1: "OK", 2: "NG"}.get(int(answer.result)), "score": answer.score,
                "error": int(answer.error_code), "ms": round(answer.seconds * 1000, 1)}  # fmt: skip

    return trigger


def reuse_case(
    work: Path, trigger: Trigger, request_id: str, first: tuple[str, str], second: tuple[str, str],
    wait_s: float = 0.0,
) -> dict[str, Any]:  # fmt: skip
    """Two triggers with one request id ((product, part id) each, ``wait_s`` apart): what the
    PLC was answered and what the station stored."""
    answers = [trigger(request_id, *first)]
    time.sleep(wait_s)
    answers.append(trigger(request_id, *second))
    stored = rows(work, request_id)
    return {"asked": [first, second], "answers": answers, "rows": stored}


def reuse_cases(work: Path, plcs: dict[str, Trigger]) -> dict[str, Any]:
    """Every request-id case, each with ids of its own."""
    s7, modbus = plcs["s7"], plcs["modbus"]
    return {
        "s7_wrap_same_product": reuse_case(work, s7, "1", ("brick", ""), ("brick", "")),
        "s7_wrap_other_product": reuse_case(work, s7, "2", ("brick", ""), ("grass", "")),
        "modbus_same_id_new_part": reuse_case(work, modbus, "3", ("brick", "p-3a"),
                                              ("brick", "p-3b")),
        "opcua_same_id_new_part": reuse_case(work, plcs["opcua"], "4", ("brick", "p-4a"),
                                             ("brick", "p-4b")),
        "mqtt_same_id_new_part": reuse_case(work, plcs["mqtt"], "5", ("brick", "p-5a"),
                                            ("brick", "p-5b")),
        "s7_genuine_retry": reuse_case(work, s7, "6", ("brick", "p-6"), ("brick", "p-6")),
    }  # fmt: skip


def constant_id_case(work: Path, trigger: Trigger, request_id: str, count: int) -> dict[str, Any]:
    """``count`` parts back to back, each with ``request_id`` and no part id: the answers, the
    scores of the rows stored under that id (one per capture)."""
    started = time.perf_counter()
    answers = [trigger(request_id, "brick", "") for _ in range(count)]
    seconds = time.perf_counter() - started
    with sqlite3.connect(work / "line.db") as db:
        scores = [r[0] for r in db.execute(
            "select score from inspections where request_id = ? or request_id like ? "
            "order by created_at", (f"{STATION_ID}/{request_id}", f"{STATION_ID}/{request_id}~%"),
        )]  # fmt: skip
    return {"answers": answers, "row_scores": scores, "seconds": round(seconds, 2)}


async def _continuous_twice(endpoint: str, meas: str, parts: int) -> list[list[str]]:
    """A MES runs a continuous job with MeasId ``meas`` for ``parts`` results, stops it and
    at once starts it again with the same MeasId: each run's ResultIds."""
    async with Client(endpoint, timeout=10) as client:
        mv = await load_client_types(client)
        system = await client.nodes.objects.get_child("1:VisionSystem")
        machine = await system.get_child(f"{mv}:VisionStateMachine")
        automatic = await machine.get_child(f"{mv}:AutomaticModeStateMachine")
        recipes = await system.get_child(f"{mv}:RecipeManagement")
        await machine.call_method(f"{mv}:SelectModeAutomatic")
        await recipes.call_method(f"{mv}:PrepareRecipe", ua.RecipeIdExternalDataType(Id="brick"),
                                  ua.RecipeIdInternalDataType(Id=""))  # fmt: skip
        events: asyncio.Queue[Any] = asyncio.Queue()

        class Handler:
            def event_notification(self, event: Any) -> None:
                events.put_nowait(event)

        subscription = await client.create_subscription(20, Handler())
        await subscription.subscribe_events(system, ua.NodeId(RESULT_READY_EVENT, mv))
        arguments = [ua.MeasIdDataType(Id=meas), ua.PartIdDataType(Id=""),
                     ua.RecipeIdExternalDataType(Id=""), ua.ProductIdDataType(Id=""),
                     ua.Variant([], ua.VariantType.Variant)]  # fmt: skip
        cause = (ua.Variant(0, ua.VariantType.Int32), ua.Variant("bench", ua.VariantType.String))
        runs = []
        for _ in range(2):
            await automatic.call_method(f"{mv}:StartContinuous", *arguments)
            seen = [await asyncio.wait_for(events.get(), 30) for _ in range(parts)]
            await automatic.call_method(f"{mv}:Stop", *cause)  # after the part in flight
            await asyncio.sleep(0.3)
            while not events.empty():
                seen.append(events.get_nowait())
            runs.append([e.ResultId.Id for e in seen])
        return runs


def vision_restart_case(work: Path, endpoint: str, parts: int = 5) -> dict[str, Any]:
    """OPC 40100: a continuous job stopped and restarted with the same MeasId within a second."""
    first, second = asyncio.run(_continuous_twice(endpoint, "c-1", parts))
    with sqlite3.connect(work / "line.db") as db:
        stored = db.execute(
            "select count(*) from inspections where source = 'opcua-40100'"
        ).fetchone()[0]
    return {"first": first, "second": second, "rows": stored}


def kill_case(plc: RegisterPlc, station: Child) -> dict[str, Any]:
    """Heartbeat over 1 s, kill -9 the station, Heartbeat and Ready over the next 2 s."""

    def sample(seconds: float) -> list[int]:
        values = []
        for _ in range(int(seconds / 0.1)):
            values.append(int.from_bytes(plc.read()[HEARTBEAT_AT : HEARTBEAT_AT + 2], "big"))
            time.sleep(0.1)
        return values

    alive = sample(1.0)
    station.kill()
    killed_at = time.monotonic()
    after = sample(2.0)
    changes = [i for i, (a, b) in enumerate(itertools.pairwise(after)) if a != b]
    return {
        "heartbeat_alive": alive,
        "heartbeat_after_kill": after,
        "last_change_after_kill_s": round((changes[-1] + 1) * 0.1, 1) if changes else 0.0,
        "ready_after_kill": plc.read()[3],
        "observed_s": round(time.monotonic() - killed_at, 1),
    }


def wrong_db_case(work: Path, tree: Path, seconds: float = 10.0) -> dict[str, Any]:
    """A station whose S7 section names data block 999 (the PLC holds 100): its attempts."""
    plc = S7Plc()
    try:
        section = {"enabled": True, "port": plc.port, "db": 999, "poll_ms": 10.0}
        station = start(work, tree, {"s7": section}, "wrong-db.log")
        time.sleep(seconds)
        station.kill()
    finally:
        plc.stop()
    log = (work / "wrong-db.log").read_text(errors="replace")
    attempts = re.findall(r"s7 handshake with [^:]+: (.*)", log)
    return {"seconds": seconds, "attempts": len(attempts), "error": attempts[0] if attempts else ""}


def run_cases(work: Path, tree: Path) -> dict[str, Any]:
    """All cases against a station from ``tree``."""
    work.mkdir(parents=True, exist_ok=True)
    for folder in ("registry", "blobs", "camera"):  # a fresh station; the trained model stays
        shutil.rmtree(work / folder, ignore_errors=True)
    for name in ("line.db", "station.log", "wrong-db.log", "mosquitto.db"):
        (work / name).unlink(missing_ok=True)
    registry(work)
    camera(work)
    broker = Broker(work, persistent=True, security=OFF, stations=(STATION_ID,))
    broker.start()
    soft = SoftPlc(f"opc.tcp://127.0.0.1:{free_port()}/plc", security=OFF)
    soft.start()
    registers: dict[str, RegisterPlc] = {"s7": S7Plc(), "modbus": ModbusPlc(), "enip": EnipPlc()}
    vision = {"enabled": True, "port": free_port(), "anonymous": "engineer"}
    links = {
        "opcua": {"enabled": True, "endpoint": soft.endpoint},
        "mqtt": {"enabled": True, "port": broker.port},
        "machine_vision": vision,
        **{name: to_mapping(plc.config(poll_ms=10.0)) for name, plc in registers.items()},
    }
    station = start(work, tree, links, "station.log")
    mqtt = None
    try:
        for plc in registers.values():
            plc.connect(timeout_s=120)
        soft.wait_for("Ready", True, 60)
        mqtt = MqttPlc(broker.port)
        plcs = {name: plc_trigger(plc) for name, plc in registers.items()}
        plcs |= {"opcua": plc_trigger(soft), "mqtt": mqtt.trigger}
        for name, trigger in plcs.items():  # warm-up: every link answers
            trigger(f"warm-{name}", "brick", "")
        report = reuse_cases(work, plcs)
        for name, count in LINE_RATE.items():
            report[f"{name}_constant_id"] = constant_id_case(work, plcs[name], f"k-{name}", count)
        endpoint = f"opc.tcp://127.0.0.1:{vision['port']}/inspection"
        report["vision_continuous_restart"] = vision_restart_case(work, endpoint)
        report["kill9_heartbeat"] = kill_case(registers["s7"], station)
    finally:
        station.stop()
        if mqtt is not None:
            mqtt.close()
        for plc in registers.values():
            plc.stop()
        soft.stop()
        broker.kill()
    report["wrong_db_backoff"] = wrong_db_case(work, tree)
    return report


CASES = {
    "s7_wrap_same_product": "S7: request id 1 comes back at once for the same product, no part id "
    "(a counter that wrapped, a constant id)",
    "s7_wrap_other_product": "S7: request id 2 for brick, then for grass (wrapped, another product)",
    "modbus_same_id_new_part": "Modbus: request id 3 for part p-3a, then for part p-3b",
    "opcua_same_id_new_part": "OPC UA client handshake: request id 4 for part p-4a, then p-4b",
    "mqtt_same_id_new_part": "MQTT: request id 5 for part p-5a, then p-5b",
    "s7_genuine_retry": "S7: request id 6 for part p-6 twice at once (a genuine retry)",
    "s7_constant_id": f"S7: a PLC sends one request id and no part id for {LINE_RATE['s7']} parts "
    "back to back (line rate)",
    "enip_constant_id": f"EtherNet/IP: one request id and no part id for {LINE_RATE['enip']} parts "
    "back to back",
    "vision_continuous_restart": "OPC 40100: StartContinuous (MeasId c-1) for 5 results, Stop, "
    "StartContinuous again with the same MeasId at once",
    "kill9_heartbeat": "S7: the station is killed with SIGKILL; what the PLC can see",
    "wrong_db_backoff": "S7: the station's data block is wrong (999; the PLC has 100), 10 s",
}


def reuse_text(case: str, result: dict[str, Any]) -> tuple[str, bool]:
    """What the second trigger got, and whether that was right."""
    product = result["asked"][1][0]
    second, stored = result["answers"][1], result["rows"]
    retry = case == "s7_genuine_retry"
    new = len(stored) == 2
    answer = f"answered {second['verdict'] or 'error ' + str(second['error'])} in {second['ms']} ms"
    if new:
        text = (
            f"{answer}: a new capture, stored as `{stored[1][0]}` ({stored[1][1]}, "
            f"{stored[1][3]}); 2 rows"
        )
    else:
        text = (
            f"{answer}: the stored verdict of the first part ({stored[0][1]}, "
            f"{stored[0][3]}) replayed, no capture; 1 row"
        )
    if case == "s7_wrap_other_product" and not new:
        text += f"; the PLC asked for {product}"
    right = new != retry
    return text + (
        ""
        if right
        else " — **wrong**: another part's verdict"
        if not retry
        else " — a second capture of the same part"
    ), right


def kill_text(result: dict[str, Any]) -> tuple[str, bool]:
    alive, after = result["heartbeat_alive"], result["heartbeat_after_kill"]
    moving = len(set(alive)) > 1
    still = len(set(after[-10:])) == 1
    if not moving:
        return (
            f"no heartbeat (offset 208 reads {alive[0]} and never moves); Ready stays "
            f"{result['ready_after_kill']}: the PLC cannot tell a dead station"
        ), False
    return (f"Heartbeat {alive[0]} -> {alive[-1]} in 1 s; after the kill it stood still (last "
            f"change {result['last_change_after_kill_s']} s after it, then {after[-1]} for "
            f"{result['observed_s']} s) while Ready stayed {result['ready_after_kill']}: a PLC "
            "watching the count for 1 s (4 x 250 ms) sees the station dead"), still  # fmt: skip


def backoff_text(result: dict[str, Any]) -> tuple[str, bool]:
    rate = result["attempts"] / result["seconds"]
    return (f"{result['attempts']} sessions in {result['seconds']:g} s ({rate:.1f}/s), each "
            f"failing: {result['error'][:90]}"), rate < 1.0  # fmt: skip


def constant_text(result: dict[str, Any]) -> tuple[str, bool]:
    """Captures per trigger; answers without a capture of their own carry another part's verdict."""
    answers, scores = result["answers"], result["row_scores"]
    own = sum(abs(a["score"] - s) < 1e-4 for a, s in zip(answers, scores, strict=False))
    wrong = len(answers) - own if len(scores) == len(answers) else len(answers) - len(scores)
    ms = sorted(a["ms"] for a in answers)
    return (f"{len(scores)} captures and rows for {len(answers)} triggers; {wrong} answered with "
            f"a verdict that was no capture of their own; p50 {ms[len(ms) // 2]} ms, "
            f"{result['seconds']} s in all"), wrong == 0  # fmt: skip


def vision_text(result: dict[str, Any]) -> tuple[str, bool]:
    first, second = result["first"], result["second"]
    again = sum(r in set(first) for r in second)
    results = len(first) + len(second)
    return (
        f"run 2: {again} of {len(second)} ResultIds were run 1's; {result['rows']} rows "
        f"(captures) for {results} results"
    ), again == 0 and result["rows"] == results


def row_texts(report: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    texts = {
        case: reuse_text(case, report[case]) for case in CASES if "asked" in report.get(case, {})
    }
    for case in ("s7_constant_id", "enip_constant_id"):
        texts[case] = constant_text(report[case])
    texts["vision_continuous_restart"] = vision_text(report["vision_continuous_restart"])
    texts["kill9_heartbeat"] = kill_text(report["kill9_heartbeat"])
    texts["wrong_db_backoff"] = backoff_text(report["wrong_db_backoff"])
    return texts


def write(before: dict[str, Any], now: dict[str, Any], env: dict[str, str], tree: str) -> None:
    old, new = row_texts(before), row_texts(now)
    commit = subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    table = [f"| case | before ({commit}) | now | now handled |", "| --- | --- | --- | --- |"]
    table += [f"| {CASES[c]} | {old[c][0]} | {new[c][0]} | {'yes' if new[c][1] else 'NO'} |"
              for c in CASES]  # fmt: skip
    wrong = sum(
        not ok
        for case, (_, ok) in new.items()
        if case not in ("kill9_heartbeat", "wrong_db_backoff")
    )
    lines = [
        "# Hostile PLC links: reused request ids, a killed station, a wrong data block",
        "",
        f"`{env['command']}` at {env['commit']} on {env['cpu']}; load (`uptime`) "
        f'{env["load_before"]} before, {env["load_after"]} after. "Before" is the station '
        f'of commit {commit} (a worktree at `{tree}`, same venv), "now" this checkout\'s; the '
        "PLC side (python-snap7's, pymodbus's and cpppo's servers, the asyncua soft PLC, a "
        "private Mosquitto, an asyncua MES) is the same. One `inspection station run` subprocess "
        "serves S7, Modbus TCP, EtherNet/IP, the OPC UA client handshake, MQTT and OPC 40100 at "
        "once, security off; products brick "
        "(threshold 0.3: a defect is NG) and grass (threshold 0.999: OK unless the score "
        "saturates at 1.0, as this tiny model's worst defects do), one tiny PatchCore; the "
        "camera serves defective parts only, so verdicts alone rarely differ: the stored rows "
        "say which part and product an answer belongs to. Heartbeat every 250 ms (the default "
        "`heartbeat_ms`).",
        "",
        *table,
        "",
        f"Now: {wrong} cases with wrong verdicts in the request-id cases; every answer was given "
        "(0 lost). Code: `bench/hostile_links.py`; the mechanisms: `inspection.line.handshake."
        "replay` (one rule for every link), `inspection.line.registers` (Heartbeat, back-off); "
        "tests: `tests/line/test_registers.py`, `tests/line/test_station_run.py`, "
        "`tests/line/test_machine_vision.py`.",
        "",
    ]
    save_report(REPORTS, "hostile_links", {"before": before, "now": now, "environment": env},
                "\n".join(lines))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="Worktree of the old station.")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/inspection-hostile-links"))
    args = parser.parse_args()
    with recorded() as env:
        before = run_cases(args.workdir / "before", args.before)
        now = run_cases(args.workdir / "now", ROOT)
    write(before, now, env, str(args.before))
    print((REPORTS / "hostile_links.md").read_text())


if __name__ == "__main__":
    main()
