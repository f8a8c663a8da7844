"""The operator's read latency while an observer floods the OPC 40100 server with refused calls
(#92): an operator session reads the VisionStateMachine's CurrentState back to back, first with
the station idle, then while an observer session calls SelectModeAutomatic (engineer only) as
fast as it is answered; each client a process of its own, the station in this one. Reports
p50/p95/max of the reads, the refusals per second, and what the control journal wrote for them
(``RefusalLimit``: at most 10 records per session per 10 s, the rest one aggregate).

    python bench/refusal_flood.py [--seconds 15] [--out DIR]

Writes ``reports/plant/refusal_flood.json`` and ``.md``. Time it alone:
``/work/wt/heavy --alone python bench/refusal_flood.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import recorded, save_report, table
from _shared import mes_client
from asyncua import ua
from hostile_opcua import PASSWORD, station

from inspection.line.pki import LinePki

OUT = Path(__file__).resolve().parents[1] / "reports" / "plant"
HEADERS = ("operator reads", "reads", "p50 ms", "p95 ms", "max ms", "refusals",
           "journal records (obs)", "station log lines")  # fmt: skip


async def _client(endpoint: str, pki: Path, user: str):
    """A session of ``user`` (a password) on the MES's channel: its certificate is not the
    user token (``mes_client`` sends it as X509 user ``mes``, an admin)."""
    client = await mes_client(endpoint, LinePki(pki))
    client.user_certificate = client.user_private_key = None
    client.set_user(user)
    client.set_password(PASSWORD)
    await client.connect()
    mv = await client.get_namespace_index("http://opcfoundation.org/UA/MachineVision")
    system = await client.nodes.objects.get_child("1:VisionSystem")
    return client, await system.get_child(f"{mv}:VisionStateMachine"), mv


async def read(endpoint: str, pki: Path, seconds: float) -> dict:
    """The operator: CurrentState read back to back for ``seconds``; each read's milliseconds."""
    client, machine, _ = await _client(endpoint, pki, "op-a")
    state = await machine.get_child("0:CurrentState")
    timings, end = [], time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            started = time.perf_counter()
            await state.read_value()
            timings.append((time.perf_counter() - started) * 1000)
    finally:
        await client.disconnect()
    return {"reads_ms": timings}


async def flood(endpoint: str, pki: Path, seconds: float) -> dict:
    """The observer: SelectModeAutomatic (refused: BadUserAccessDenied) as fast as answered."""
    client, machine, mv = await _client(endpoint, pki, "obs")
    method = await machine.get_child(f"{mv}:SelectModeAutomatic")
    refused, other, end = 0, 0, time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            try:
                await machine.call_method(method)
                other += 1
            except ua.UaStatusCodeError as exc:
                refused += exc.code == ua.StatusCodes.BadUserAccessDenied
                other += exc.code != ua.StatusCodes.BadUserAccessDenied
    finally:
        await client.disconnect()
    return {"refused": refused, "other": other}


class _LineCount(logging.Handler):
    """Counts the station's log lines (INFO and up) and their bytes as formatted."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = self.bytes = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        self.bytes += len(self.format(record)) + 1


def _spawn(role: str, endpoint: str, pki: Path, seconds: float) -> subprocess.Popen:
    command = [sys.executable, __file__, "--role", role, "--endpoint", endpoint,
               "--pki", str(pki), "--seconds", str(seconds)]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def _result(process: subprocess.Popen) -> dict:
    out, _ = process.communicate(timeout=300)
    if process.returncode != 0:
        raise RuntimeError(f"{process.args[3]} client failed (exit {process.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def _summary(reads: list[float]) -> dict:
    cuts = statistics.quantiles(reads, n=100)
    return {"reads": len(reads), "p50_ms": round(cuts[49], 2), "p95_ms": round(cuts[94], 2),
            "max_ms": round(max(reads), 1)}  # fmt: skip


def measure(seconds: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="refusal-flood-") as scratch:
        root = Path(scratch)
        built = station(root)
        lines, station_log = _LineCount(), logging.getLogger("inspection.line")
        try:
            endpoint, pki = built.links["machine_vision"].endpoint, root / "pki"
            journal = built.core.models.registry.journal
            idle = _summary(_result(_spawn("read", endpoint, pki, seconds))["reads_ms"])
            before = len(journal.controls())
            station_log.addHandler(lines)
            station_log.setLevel(logging.INFO)  # as the station CLI logs (cli.console)
            flooder = _spawn("flood", endpoint, pki, seconds + 2)
            time.sleep(1.0)  # the flood under way
            during = _summary(_result(_spawn("read", endpoint, pki, seconds))["reads_ms"])
            flooded = _result(flooder)
            records = journal.controls()[before:]
        finally:
            station_log.removeHandler(lines)
            built.stop()
    observer = [r for r in records if r["user"] == "obs"]
    return {
        "seconds": seconds, "idle": idle, "flood": during,
        "refusals": flooded["refused"], "not_refused": flooded["other"],
        "refusals_per_s": round(flooded["refused"] / (seconds + 2), 1),
        "journal_records": len(observer),
        "journal_aggregates": sum(r["method"] == "RefusedCalls" for r in observer),
        "log_lines": lines.count, "log_bytes": lines.bytes,
    }  # fmt: skip


def markdown(report: dict) -> str:
    now = report["now"]
    idle, flood_ = now["idle"], now["flood"]
    rows = [
        ("idle", idle["reads"], idle["p50_ms"], idle["p95_ms"], idle["max_ms"], "-", "-", "-"),
        ("refused-call flood", flood_["reads"], flood_["p50_ms"], flood_["p95_ms"],
         flood_["max_ms"], f"{now['refusals']} ({now['refusals_per_s']}/s)",
         f"{now['journal_records']} ({now['journal_aggregates']} aggregate)",
         f"{now['log_lines']} ({now['log_bytes'] / 1024:.0f} KiB)"),
    ]  # fmt: skip
    lines = [
        "# Refused-call flood: the operator's read latency (#92)",
        "",
        "An operator session (op-a) reads CurrentState back to back, idle and while an observer",
        "session calls SelectModeAutomatic (refused, BadUserAccessDenied) as fast as answered;",
        "each client a process of its own over Basic256Sha256 SignAndEncrypt "
        f"(`{now['command']}`, commit {now['commit']}).",
        f"Run on {now['cpu']}, load before {now['load_before']}, after {now['load_after']}.",
        "Before (issue #92, on 5e92b82): 73 refusals/s for 15 s, each signed, fsynced and "
        "logged twice; the operator's reads ~12 ms -> 200-600 ms.",
        "",
        *table(HEADERS, rows),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--role", choices=("read", "flood"), help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--pki", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:  # a client process
        run = read if args.role == "read" else flood
        print(json.dumps(asyncio.run(run(args.endpoint, args.pki, args.seconds))))
        return
    with recorded() as env:
        figures = measure(args.seconds)
    report = {"now": figures | env}
    save_report(args.out, "refusal_flood", report, markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
