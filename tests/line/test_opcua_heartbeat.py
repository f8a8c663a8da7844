"""The OPC UA client heartbeat a PLC supervises, against a real asyncua server (the soft PLC):
it stands still while the serve loop hangs, and a PLC without it is an error in the log."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from inspection.line.config import OpcUaTriggerConfig
from inspection.line.handshake import LinkContext
from inspection.line.opcua import OpcUaHandshake
from inspection.line.softplc import SoftPlc

from .helpers import free_port, secure


class _Hung:
    """A handler whose inspection never ends (until the test lets it)."""

    timeout_s = 0.2

    def __init__(self) -> None:
        self.release = threading.Event()

    def handle(self, _trigger: Any, *, source: str) -> Any:
        self.release.wait(30)
        raise RuntimeError("released")


def _handshake(tmp_path: Path, handler: _Hung) -> tuple[SoftPlc, OpcUaHandshake]:
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/plc"
    plc = SoftPlc(endpoint, security=secure(tmp_path))
    config = OpcUaTriggerConfig(enabled=True, endpoint=endpoint, heartbeat_ms=50.0)
    context = LinkContext(handler, "cam-1", secure(tmp_path), None, lambda _: lambda *_: None)  # type: ignore[arg-type]
    return plc, OpcUaHandshake(config, context)


def test_the_heartbeat_stands_still_while_the_serve_loop_hangs(tmp_path: Path) -> None:
    handler = _Hung()
    plc, station = _handshake(tmp_path, handler)
    plc.start()
    station.start()
    try:
        assert station.connected.wait(10)
        beat = plc.read("Heartbeat")
        time.sleep(0.3)
        assert plc.read("Heartbeat") >= beat + 3  # alive: counting
        plc.write("Trigger", True)  # the inspection hangs from here
        plc.wait_for("Busy", True, 5)
        time.sleep(handler.timeout_s + 0.05 + 1.0 + 0.3)  # past the longest allowed cycle
        stalled = plc.read("Heartbeat")
        time.sleep(0.4)
        assert plc.read("Heartbeat") == stalled  # the PLC's watchdog sees a hung station
    finally:
        handler.release.set()
        station.stop()
        plc.stop()


def test_a_plc_without_a_heartbeat_is_an_error_in_the_log(tmp_path: Path) -> None:
    errors: list[str] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = lambda record: errors.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("inspection.line.opcua").addHandler(handler)
    plc, station = _handshake(tmp_path, _Hung())
    plc.start()
    plc.nodes["Heartbeat"].delete()  # a PLC map from before the heartbeat
    station.start()
    try:
        assert station.connected.wait(10)
        deadline = time.monotonic() + 5
        while not errors and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        logging.getLogger("inspection.line.opcua").removeHandler(handler)
        station.stop()
        plc.stop()
    assert any("cannot see a dead or hung station" in e for e in errors), errors
