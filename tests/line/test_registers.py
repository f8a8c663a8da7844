"""The S7, Modbus TCP and EtherNet/IP handshakes against the libraries' own servers
(python-snap7's, pymodbus's, cpppo's), the test as the PLC (``softplc.RegisterPlc``): the
cycle, retries and reused request ids, the heartbeat a PLC supervises, and the back-off on a
wrong data block (or tag names the PLC does not have)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import multiprocessing
import os
import signal
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from bench._shared import camera_folder, line_config, line_yaml
from inspection.cli import app
from inspection.core.config import to_mapping
from inspection.line import registers as regs
from inspection.line.enip import EnipPlc
from inspection.line.handshake import ErrorCode, ResultCode
from inspection.line.links import register_plcs
from inspection.line.softplc import RegisterPlc
from inspection.line.station import LineStation
from inspection.store.models import Inspection

from .helpers import serve_until_killed, slow_first_capture, two_live_products


@pytest.fixture(params=list(register_plcs()))
def plc(request: pytest.FixtureRequest) -> Iterator[RegisterPlc]:
    """Each memory-block link's PLC: its block in python-snap7's server (data block 100),
    pymodbus's (unit 1), or its tags in cpppo's EtherNet/IP server."""
    kind = register_plcs()[request.param]
    pytest.importorskip(kind.library)
    running = kind()
    yield running
    running.stop()


def _station(tmp_path: Path, fp32_bundle: Path, camera: Path, plc: RegisterPlc, **overrides):
    config = line_config(tmp_path, fp32_bundle, camera, **overrides)
    return dataclasses.replace(config, links={plc.protocol: plc.config(poll_ms=5.0)})


def _rows(station: LineStation) -> list[Inspection]:
    with station.core.store.session() as session:
        return list(session.scalars(select(Inspection).order_by(Inspection.created_at)))


def test_the_plc_handshake_over_s7_and_modbus(
    plc: RegisterPlc, tmp_path: Path, fp32_bundle: Path, tiny_product: Path
) -> None:
    """The OPC UA handshake's cycle and answers, polled from the PLC's own memory."""
    camera = camera_folder(tmp_path, tiny_product)
    station = LineStation.build(_station(tmp_path, fp32_bundle, camera, plc))
    station.start()
    try:
        plc.connect(timeout_s=10)
        first = plc.trigger("r-1", part_id="part-r-1")
        unknown = plc.trigger("r-2", product="gravel")
    finally:
        station.stop()
    [row] = _rows(station)
    assert (row.request_id, row.source, row.part_id) == ("cam-1/r-1", plc.protocol, "part-r-1")
    assert first.result == ResultCode[row.verdict] and first.error_code == ErrorCode.NONE
    assert first.score == pytest.approx(row.score, rel=1e-6) and first.request_id == "r-1"
    assert not first.replayed
    assert (unknown.result, unknown.error_code) == (ResultCode.ERROR, ErrorCode.UNKNOWN_PRODUCT)
    assert "gravel" in unknown.message


def test_a_constant_request_id_is_a_new_part_each_time(
    plc: RegisterPlc,
    tmp_path: Path,
    fp32_bundle: Path,
    tiny_product: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A PLC that sends one request id and no part id for every part, at line rate: each
    trigger is a capture of its own, with its own verdict and row, never the previous part's.
    The same part id for another product is a new part."""
    camera = camera_folder(tmp_path, tiny_product, count=6)  # good and defective parts
    two_live_products(tmp_path, fp32_bundle)
    station = LineStation.build(_station(tmp_path, fp32_bundle, camera, plc))
    station.start()
    try:
        plc.connect(timeout_s=10)
        with caplog.at_level(logging.WARNING, logger="inspection.line.handshake"):
            constant = [plc.trigger("1", product="brick") for _ in range(6)]
            named = plc.trigger("1", product="brick", part_id="p-7")
            grass = plc.trigger("1", product="grass", part_id="p-7")
    finally:
        station.stop()
    rows = _rows(station)
    assert len(rows) == 8  # a capture for every trigger
    assert [(a.result, a.score) for a in constant] == [
        (ResultCode[r.verdict], pytest.approx(r.score, abs=1e-5)) for r in rows[:6]
    ]
    assert not any(a.replayed for a in (*constant, named, grass))
    assert rows[0].request_id == "cam-1/1" and len({r.request_id for r in rows}) == 8
    assert [(r.product, r.part_id) for r in rows[6:]] == [("brick", "p-7"), ("grass", "p-7")]
    logged = [r.message for r in caplog.records]
    assert sum("request id '1' was used before" in m for m in logged) == 7
    assert sum("replayed, no capture" in m for m in logged) == 0


# The retry test's clock. Its on-time answers take 0.03-0.11 s over S7 and Modbus and 0.2-0.3 s
# over EtherNet/IP, seen by the PLC (load 2.5); the late camera holds its part past TIMEOUT_S,
# and the PLC's retry of it comes straight after that TIMEOUT, well inside RETRY_S of the
# cycle's start. Only TIMEOUT_S bounds a wait on the happy path; the rest is time that must pass.
TIMEOUT_S = 1.5  # the station's inspect_timeout_s
RETRY_S = TIMEOUT_S + 2.5  # the link's retry_s


def test_only_a_retry_of_this_cycle_is_replayed(
    plc: RegisterPlc, tmp_path: Path, fp32_bundle: Path, tiny_product: Path
) -> None:
    """#92, against the PLC library's own server: a part the camera is late for is answered
    TIMEOUT; the PLC's retry of that cycle (same request id and PartId) gets its verdict once,
    ``Replayed`` = 1, no second capture. Everything else is a capture with ``Replayed`` = 0
    written on each answer: a request counter wrapping every 4 with carrier numbers as PartId
    (8 parts, 8 verdicts of their own), a serial re-inspected after rework, and the same id and
    PartId again after the link's ``retry_s`` (its first answer TIMEOUT)."""
    camera = camera_folder(tmp_path, tiny_product, count=6)
    config = line_config(tmp_path, fp32_bundle, camera, inspect_timeout_s=TIMEOUT_S)
    section = plc.config(poll_ms=5.0, retry_s=RETRY_S)
    station = LineStation.build(dataclasses.replace(config, links={plc.protocol: section}))
    camera = slow_first_capture(station, hold_s=TIMEOUT_S + 0.5)  # its part always times out
    station.start()
    try:
        plc.connect(timeout_s=10)
        late = plc.trigger("t-1", part_id="serial-1")
        retries = [plc.trigger("t-1", part_id="serial-1")]
        while retries[-1].error_code == ErrorCode.TIMEOUT and len(retries) < 20:
            retries.append(plc.trigger("t-1", part_id="serial-1"))
        reworked = plc.trigger("t-1", part_id="serial-1")  # back from rework: acknowledged
        plc.link.write(regs.REPLAYED, struct.pack(">h", 1))  # a re-initialised block: stale 1
        wrapped = [plc.trigger(str(n % 4), part_id=f"carrier-{n % 4}") for n in range(8)]
        camera.slow = 1
        timed_out = plc.trigger("t-2", part_id="serial-2")  # TIMEOUT_S after its cycle began
        time.sleep(RETRY_S - TIMEOUT_S + 0.5)  # then past retry_s
        stale = plc.trigger("t-2", part_id="serial-2")
    finally:
        station.stop()
    rows = _rows(station)
    assert late.error_code == ErrorCode.TIMEOUT
    assert retries[-1].error_code == ErrorCode.NONE and retries[-1].replayed
    assert timed_out.error_code == ErrorCode.TIMEOUT
    answers = [reworked, *wrapped, stale]
    assert [a.replayed for a in answers] == [False] * len(answers)
    assert len(rows) == 2 + len(answers)  # one capture per trigger, none for the retry
    assert [a.error_code for a in answers] == [ErrorCode.NONE] * len(answers), answers
    assert [(r.part_id, r.score) for r in rows[2:10]] == [  # each part's own row and verdict
        (f"carrier-{n % 4}", pytest.approx(a.score, abs=1e-5)) for n, a in enumerate(wrapped)
    ]


def test_an_answer_standing_when_the_station_connects_is_left_for_the_plc(
    plc: RegisterPlc, tmp_path: Path, fp32_bundle: Path, tiny_product: Path
) -> None:
    """Trigger and Done both high when the station connects (it died after answering, before
    the PLC dropped Trigger): the answer stands, the station fires no camera and waits for
    Trigger to fall; the next rising Trigger is the next part."""
    camera = camera_folder(tmp_path, tiny_product)
    left = plc.open_link()
    left.write(0, struct.pack(">5h", 1, 1, 0, 1, int(ResultCode.NG)))  # Trigger, ..., Done, NG
    left.write(regs.STRINGS["AnswerRequestId"][0], regs.s7_string("s-1", 30))
    left.close()
    station = LineStation.build(_station(tmp_path, fp32_bundle, camera, plc))
    station.start()
    try:
        plc.connect(timeout_s=10)
        time.sleep(0.2)  # 40 polls of a Trigger that stays high
        standing = plc.read()
        plc.link.write(0, b"\0\0")  # the PLC read the answer: Trigger falls
        plc._until(6, 0, timeout_s=5)  # Done falls; only then the next part
        plc.trigger("s-2")
    finally:
        station.stop()
    assert struct.unpack_from(">5h", standing) == (1, 1, 0, 1, int(ResultCode.NG))
    assert regs.read_string(standing, "AnswerRequestId") == "s-1"
    assert [r.request_id for r in _rows(station)] == ["cam-1/s-2"]


def test_the_heartbeat_advances_while_the_station_lives_and_stops_when_it_is_killed(
    plc: RegisterPlc, tmp_path: Path, fp32_bundle: Path, tiny_product: Path
) -> None:
    """A station process killed with SIGKILL leaves Ready at 1; its Heartbeat stands still,
    which the PLC sees within 4 x heartbeat_ms."""
    camera = camera_folder(tmp_path, tiny_product)
    config = line_config(tmp_path, fp32_bundle, camera)
    config = dataclasses.replace(
        config, links={plc.protocol: plc.config(poll_ms=10.0, heartbeat_ms=100.0)}
    )
    process = multiprocessing.get_context("spawn").Process(
        target=serve_until_killed, args=(config,), daemon=True
    )
    process.start()
    try:
        plc.connect(timeout_s=60)  # a spawned station on a loaded 2-core CI machine
        beats = []  # (time, count) every 50 ms for 2 s while the station lives
        for _ in range(40):
            beats.append((time.monotonic(), plc.heartbeat()))
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.join(10)
        time.sleep(0.15)
        after = [plc.heartbeat()]
        for _ in range(4):
            time.sleep(0.2)
            after.append(plc.heartbeat())
        ready = plc.read()[3]
    finally:
        if process.is_alive():
            process.kill()
    counts = [count for _, count in beats]
    assert counts[-1] > counts[0], counts
    changes = [t for (t, a), (_, b) in itertools.pairwise(beats) if b != a]
    still = max(b - a for a, b in itertools.pairwise([beats[0][0], *changes, beats[-1][0]]))
    assert still < 1.0, f"alive, yet the count stood still {still:.2f} s: {counts}"  # the PLC's 1 s
    assert len(set(after)) == 1, after  # stood still after the kill
    assert ready == 1  # Ready alone still says "serving": the PLC must watch Heartbeat


def test_a_wrong_data_block_backs_off_instead_of_reconnecting_at_once(
    plc: RegisterPlc,
    tmp_path: Path,
    fp32_bundle: Path,
    tiny_product: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A data block the PLC does not have (S7) or registers beyond its memory (Modbus) fail
    every session; the station retries after 0.1, 0.2, 0.4, 0.8... s (+ up to 20 %), not at
    once: a handful of attempts in 2 s, where it made hundreds before."""
    wrong = plc.unserved
    config = line_config(tmp_path, fp32_bundle, camera_folder(tmp_path, tiny_product))
    section = plc.config(poll_ms=5.0, backoff_initial_s=0.1, backoff_max_s=5.0, **wrong)
    station = LineStation.build(dataclasses.replace(config, links={plc.protocol: section}))
    with caplog.at_level(logging.WARNING, logger="inspection.line.registers"):
        station.start()
        time.sleep(2.0)
        station.stop()
    attempts = [r for r in caplog.records if f"{plc.protocol} handshake with" in r.message]
    assert 3 <= len(attempts) <= 6, [r.message for r in attempts]
    [handshake] = station.links.values()
    assert not handshake.connected.is_set()


def test_station_trigger_via_enip_writes_the_tags_as_the_plc_program_would(
    tmp_path: Path, fp32_bundle: Path, tiny_product: Path
) -> None:
    """``inspection station trigger --via enip`` against a station serving cpppo's tags."""
    pytest.importorskip("cpppo")
    plc = EnipPlc()
    camera = camera_folder(tmp_path, tiny_product)
    config = line_config(tmp_path, fp32_bundle, camera, enip=plc.config(poll_ms=5.0))
    station = LineStation.build(config)
    station.start()
    try:
        path = line_yaml(tmp_path, camera, enip=to_mapping(plc.config()))
        argv = ["station", "trigger", "--via", "enip", "-c", str(path), "--request-id", "c-1"]
        result = CliRunner().invoke(app, [*argv, "--part-id", "p-1"])
    finally:
        station.stop()
        plc.stop()
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    [row] = _rows(station)
    assert (answer["request_id"], answer["verdict"]) == ("c-1", row.verdict)
    assert (row.request_id, row.part_id, row.source) == ("cam-1/c-1", "p-1", "enip")
