"""The S7 and Modbus TCP handshakes against the libraries' own servers, the test as the PLC."""

from __future__ import annotations

import asyncio
import dataclasses
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from inspection.line.config import ModbusConfig, S7Config
from inspection.line.handshake import ErrorCode, ResultCode
from inspection.line.mosquitto import free_port, wait_port
from inspection.line.registers import BLOCK_BYTES, STRINGS, ModbusLink, S7Link, s7_string
from inspection.line.station import LineStation

from .station_env import camera_folder, line_config


@pytest.fixture
def s7_plc() -> Iterator[S7Config]:
    """A ``python-snap7`` server holding data block 100."""
    server_module = pytest.importorskip("snap7.server")
    from snap7.type import SrvArea

    server, block = server_module.Server(), bytearray(BLOCK_BYTES)
    server.register_area(SrvArea.DB, 100, block)
    config = S7Config(enabled=True, port=free_port(), db=100, poll_ms=5.0)
    server.start_to("127.0.0.1", config.port)
    try:
        yield config
    finally:
        server.stop()
        server.destroy()


@pytest.fixture
def modbus_plc() -> Iterator[ModbusConfig]:
    """A ``pymodbus`` TCP server with 200 holding registers for unit 1."""
    pytest.importorskip("pymodbus")
    from pymodbus.datastore import (
        ModbusDeviceContext,
        ModbusSequentialDataBlock,
        ModbusServerContext,
    )
    from pymodbus.server import ModbusTcpServer

    config = ModbusConfig(enabled=True, port=free_port(), address=10, poll_ms=5.0)
    device = ModbusDeviceContext(hr=ModbusSequentialDataBlock(1, [0] * 300))
    context = ModbusServerContext(devices={1: device}, single=False)
    running: dict = {}

    async def serve() -> None:
        running["loop"] = asyncio.get_running_loop()
        running["server"] = ModbusTcpServer(context, address=("127.0.0.1", config.port))
        await running["server"].serve_forever()

    thread = threading.Thread(target=asyncio.run, args=(serve(),))
    thread.start()
    wait_port(config.port)
    try:
        yield config
    finally:
        shutdown = running["server"].shutdown()
        asyncio.run_coroutine_threadsafe(shutdown, running["loop"]).result(10)
        thread.join(10)


def _cycle(plc: S7Link | ModbusLink, request_id: str, product: str = "") -> dict:
    """One part, as a PLC program runs it: fields, Trigger up, wait Done, read, Trigger down."""
    names = ("Product", "PartId", "RequestId")
    values = (product, f"part-{request_id}", request_id)
    plc.write(16, b"".join(s7_string(v, STRINGS[n][1]) for n, v in zip(names, values, strict=True)))
    plc.write(0, struct.pack(">h", 1))
    block = _until(plc, done=1)
    plc.write(0, struct.pack(">h", 0))
    _until(plc, done=0)
    ready, busy, _, result, code, score = struct.unpack_from(">5hf", block, 2)
    text = {n: block[o + 2 : o + 2 + block[o + 1]].decode() for n, (o, _) in STRINGS.items()}
    return {"ready": ready, "busy": busy, "result": result, "error_code": code, "score": score,
            "request_id": text["AnswerRequestId"], "message": text["Message"]}  # fmt: skip


def _until(plc: S7Link | ModbusLink, *, done: int, timeout_s: float = 20.0) -> bytes:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        block = plc.read(0, BLOCK_BYTES)
        if struct.unpack_from(">h", block, 6)[0] == done:
            return block
        time.sleep(0.005)
    raise AssertionError(f"Done never became {done}")


@pytest.mark.parametrize("protocol", ["s7", "modbus"])
def test_the_plc_handshake_over_s7_and_modbus(
    protocol: str, request: pytest.FixtureRequest, tmp_path: Path, fp32_bundle: Path,
    tiny_product: Path,
) -> None:  # fmt: skip
    """The OPC UA handshake's cycle and answers, polled from the PLC's own memory."""
    plc_config = request.getfixturevalue(f"{protocol}_plc")
    config = line_config(tmp_path, fp32_bundle, camera_folder(tmp_path, tiny_product))
    station = LineStation.build(dataclasses.replace(config, **{protocol: plc_config}))
    station.start()
    [handshake] = station.registers
    assert handshake.connected.wait(10), f"the {protocol} handshake never connected"
    plc = S7Link(plc_config) if protocol == "s7" else ModbusLink(plc_config)
    try:
        first = _cycle(plc, "r-1")
        again = _cycle(plc, "r-1")  # a PLC retrying: the stored answer, no second part
        unknown = _cycle(plc, "r-2", product="gravel")
    finally:
        plc.close()
        station.stop()
    row = station.core.store.find_by_request_id("cam-1/r-1")
    assert first["result"] == int(ResultCode[row.verdict]) and first["error_code"] == 0
    assert first["score"] == pytest.approx(row.score, rel=1e-6)
    assert (first["request_id"], first["ready"], first["busy"]) == ("r-1", 1, 0)
    assert row.source == protocol and row.part_id == "part-r-1"
    assert again == first
    assert (unknown["result"], unknown["error_code"]) == (3, ErrorCode.UNKNOWN_PRODUCT)
    assert "gravel" in unknown["message"]
