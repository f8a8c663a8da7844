"""A software PLC for commissioning, tests and benches: ``SoftPlc`` (an OPC UA server with the
handshake signals) and the ``RegisterPlc``s (S7 or Modbus in python-snap7's or pymodbus's own
server). Each plays the PLC's part of the handshake against a running station; ``scan_s`` is
its scan cycle (how often it looks at Done).
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asyncua import ua
from asyncua.sync import Server, ThreadLoop

from inspection.core.errors import InspectionError
from inspection.line import registers as regs
from inspection.line.config import LinkSecurity, ModbusConfig, S7Config
from inspection.line.handshake import Answer, ErrorCode, ResultCode
from inspection.line.mosquitto import free_port, wait_port
from inspection.line.opcua import DEFAULTS, SIGNALS, signal_node_id, variant
from inspection.line.pki import LinePki
from inspection.line.security import trust_list_validator

PLC_URI = "urn:inspection:softplc"


class HandshakeTimeout(InspectionError):
    """The station did not answer a trigger in time."""


def wait_until(done: Callable[[], bool], timeout_s: float, scan_s: float, what: str) -> None:
    """Look at ``done()`` every ``scan_s`` as a PLC scans; ``HandshakeTimeout`` past ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise HandshakeTimeout(f"{what} within {timeout_s} s")
        time.sleep(scan_s)


@dataclass(frozen=True)
class PlcAnswer:
    """What the PLC read after Done rose, and how long the trigger took (seconds)."""

    request_id: str
    result: ResultCode
    error_code: ErrorCode
    score: float
    message: str
    seconds: float
    replayed: bool = False

    def answer(self, product: str) -> Answer:
        """The station's ``Answer`` as the PLC read it (``station trigger``)."""
        verdict = {ResultCode.OK: "OK", ResultCode.NG: "NG"}.get(self.result)
        return Answer(self.request_id, int(self.error_code), self.message, product=product or None,
                      verdict=verdict, score=self.score if verdict else None,  # type: ignore[arg-type]
                      replayed=bool(verdict and self.replayed))  # fmt: skip


class SoftPlc:
    """An asyncua server exposing ``<prefix>.<Signal>`` variables under ``namespace``; security on,
    Basic256Sha256 only, admitting only clients whose certificate the site CA signed."""

    def __init__(
        self,
        endpoint: str,
        *,
        security: LinkSecurity,
        namespace: str = "urn:inspection:plc",
        prefix: str = "Station",
        scan_s: float = 0.001,
    ) -> None:
        self.endpoint = endpoint
        self.scan_s = scan_s
        self.server = Server()
        self.server.set_endpoint(endpoint)
        self.server.set_server_name("inspection soft PLC")
        if security.on:
            self._secure(LinePki(security.pki_dir))
        index = self.server.register_namespace(namespace)
        station = self.server.nodes.objects.add_object(ua.NodeId(prefix, index), prefix)
        self.nodes: dict[str, Any] = {}
        for name, kind in SIGNALS.items():
            node = station.add_variable(
                signal_node_id(index, prefix, name), name, ua.Variant(DEFAULTS[kind], kind)
            )
            node.set_writable()
            self.nodes[name] = node

    def _secure(self, pki: LinePki) -> None:
        identity = pki.identity("plc", PLC_URI, server=True)
        self.server.set_application_uri(PLC_URI)
        self.server.set_security_policy(
            [
                ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
                ua.SecurityPolicyType.Basic256Sha256_Sign,
            ]
        )
        self.server.load_certificate(str(identity.certificate))
        self.server.load_private_key(str(identity.private_key))
        validator = self.server.tloop.post(trust_list_validator(pki, peer="client"))
        self.server.aio_obj.set_certificate_validator(validator.validate)

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def read(self, signal: str) -> Any:
        """The signal's value, read in the caller's thread as a PLC reads its own memory (a hop
        through the server's loop at every 1 ms scan would take CPU from the station under test)."""
        space = self.server.aio_obj.iserver.aspace
        return space.read_attribute_value(
            self.nodes[signal].nodeid, ua.AttributeIds.Value
        ).Value.Value

    def write(self, signal: str, value: Any) -> None:
        self.nodes[signal].write_value(variant(signal, value))

    def wait_for(self, signal: str, value: Any, timeout_s: float) -> None:
        what = f"{signal} did not become {value}"
        wait_until(lambda: self.read(signal) == value, timeout_s, self.scan_s, what)

    def trigger(
        self, *, request_id: str = "", product: str = "", part_id: str = "", timeout_s: float = 10.0
    ) -> PlcAnswer:
        """One full handshake cycle as a PLC runs it; raises ``HandshakeTimeout``."""
        self.wait_for("Done", False, timeout_s)
        self.write("RequestId", request_id)
        self.write("Product", product)
        self.write("PartId", part_id)
        started = time.perf_counter()
        self.write("Trigger", True)
        try:
            self.wait_for("Done", True, timeout_s)
            seconds = time.perf_counter() - started
            answer = PlcAnswer(
                request_id=self.read("AnswerRequestId"),
                result=ResultCode(self.read("Result")),
                error_code=ErrorCode(self.read("ErrorCode")),
                score=float(self.read("Score")),
                message=self.read("Message"),
                seconds=seconds,
                replayed=self.read("Replayed"),
            )
        finally:
            self.write("Trigger", False)
        self.wait_for("Done", False, timeout_s)
        return answer


class RegisterPlc:
    """A PLC without OPC UA: a protocol library's own server holds the handshake block, and this
    side plays the PLC program through a client link every ``scan_s``. Each subclass (registered
    as its link's ``plc``) says how to ``serve`` and ``shutdown``, and its link's types."""

    protocol: str
    """The link's name (``links.LINKS``)."""
    label: str
    """The protocol as reports name it."""
    library: str
    """The Python library whose server holds the block (tests skip without it)."""
    served: dict[str, Any]
    """``config`` settings naming the memory this server holds."""
    unserved: dict[str, Any]
    """``config`` settings naming memory this server does not hold (the station backs off)."""
    config_type: type  # the link's section (``links.LinkKind.section``)
    opens: Callable[[Any], regs.BlockLink]  # the link's ``BlockLink``, opened with a section

    def __init__(self, *, scan_s: float = 0.001) -> None:
        self.scan_s, self.port = scan_s, free_port()
        self.link: regs.BlockLink | None = None
        self.serve()

    def serve(self) -> None:
        raise NotImplementedError

    def config(self, **settings: Any) -> Any:
        """The station's section for this PLC (``settings`` on top)."""
        return self.config_type(**{"enabled": True, "port": self.port} | self.served | settings)

    def open_link(self) -> regs.BlockLink:
        return self.opens(self.config())

    def shutdown(self) -> None:
        raise NotImplementedError

    def connect(self, timeout_s: float = 60.0) -> None:
        """Connect, then wait until the station reports Ready."""
        self.link = self.open_link()
        self._until(2, 1, timeout_s)

    def read(self) -> bytes:
        if self.link is None:
            raise RuntimeError("RegisterPlc.connect() first")
        return self.link.read(0, regs.BLOCK_BYTES)

    def heartbeat(self) -> int:
        """The station's Heartbeat count as the PLC reads it."""
        return struct.unpack_from(">H", self.read(), regs.HEARTBEAT)[0]

    def _until(self, offset: int, value: int, timeout_s: float) -> None:
        """Read the word at ``offset`` every ``scan_s`` until it holds ``value``."""
        link = self.link
        assert link is not None
        what = f"{self.protocol}: offset {offset} did not become {value}"
        wait_until(lambda: link.read(offset, 2)[1] == value, timeout_s, self.scan_s, what)

    def trigger(
        self, request_id: str, *, product: str = "", part_id: str = "", timeout_s: float = 10.0
    ) -> PlcAnswer:
        """One cycle (strings, Trigger up, Done seen and timed, answer read, Trigger down, Done
        down); ``HandshakeTimeout`` drops Trigger, as a PLC that gives up on a part does."""
        assert self.link is not None
        names, values = ("Product", "PartId", "RequestId"), (product, part_id, request_id)
        fields = (regs.s7_string(v, regs.STRINGS[n][1]) for n, v in zip(names, values, strict=True))
        self.link.write(regs.STRINGS["Product"][0], b"".join(fields))
        started = time.perf_counter()
        self.link.write(0, b"\0\1")
        try:
            self._until(6, 1, timeout_s)
            seconds = time.perf_counter() - started
            block = self.read()
        finally:
            self.link.write(0, b"\0\0")
        self._until(6, 0, timeout_s)
        result, code, score = struct.unpack_from(">2hf", block, 8)
        return PlcAnswer(
            request_id=regs.read_string(block, "AnswerRequestId"),
            result=ResultCode(result),
            error_code=ErrorCode(code),
            score=score,
            message=regs.read_string(block, "Message"),
            seconds=seconds,
            replayed=struct.unpack_from(">h", block, regs.REPLAYED)[0] != 0,
        )

    def stop(self) -> None:
        if self.link is not None:
            self.link.close()
        self.shutdown()


class S7Plc(RegisterPlc):
    """S7 data block ``DB`` in python-snap7's server."""

    protocol, label, DB = "s7", "S7", 100
    library, served, unserved = "snap7", {"db": DB}, {"db": 999}
    config_type, opens = S7Config, regs.S7Link

    def serve(self) -> None:
        # deferred: only S7 PLCs need python-snap7
        from snap7.server import Server as S7Server
        from snap7.type import SrvArea

        self.server, self.block = S7Server(), bytearray(regs.BLOCK_BYTES)
        self.server.register_area(SrvArea.DB, self.DB, self.block)
        self.server.start_to("127.0.0.1", self.port)

    def shutdown(self) -> None:
        self.server.stop()
        self.server.destroy()


class ModbusPlc(RegisterPlc):
    """Modbus holding registers from ``address`` 10 of unit 1 in pymodbus's server."""

    protocol, label = "modbus", "Modbus TCP"
    library, served, unserved = "pymodbus", {"address": 10}, {"address": 5000}
    config_type, opens = ModbusConfig, regs.ModbusLink

    def serve(self) -> None:
        # deferred: only Modbus PLCs need pymodbus
        from pymodbus.datastore import ModbusDeviceContext as Device
        from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext
        from pymodbus.server import ModbusTcpServer

        device = Device(hr=ModbusSequentialDataBlock(1, [0] * 300))
        context = ModbusServerContext(devices={1: device}, single=False)

        async def serve() -> ModbusTcpServer:  # made in the loop that serves it
            server = ModbusTcpServer(context, address=("127.0.0.1", self.port))
            self.serving = asyncio.create_task(server.serve_forever())
            return server

        self.loop = ThreadLoop()
        self.loop.daemon = True
        self.loop.start()
        self.server = self.loop.post(serve())
        wait_port(self.port)

    def shutdown(self) -> None:
        self.loop.post(self.server.shutdown())
        self.loop.stop()
