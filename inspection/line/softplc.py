"""A software PLC: an OPC UA server with the handshake signals, for commissioning and benches.

It plays the PLC's part of the handshake against a running station: set PartId/Product/
RequestId, raise Trigger, wait for Done, read the answer, drop Trigger, wait for Done to
fall. ``scan_s`` is the PLC's scan cycle (how often it looks at Done).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from asyncua import ua
from asyncua.sync import Server

from inspection.core.errors import InspectionError
from inspection.line.config import LinkSecurity
from inspection.line.handshake import ErrorCode, ResultCode
from inspection.line.opcua import DEFAULTS, SIGNALS, signal_node_id, variant
from inspection.line.pki import LinePki
from inspection.line.security import trust_list_validator

PLC_URI = "urn:inspection:softplc"


class HandshakeTimeout(InspectionError):
    """The station did not answer a trigger in time."""


@dataclass(frozen=True)
class PlcAnswer:
    """What the PLC read after Done rose, and how long the trigger took (seconds)."""

    request_id: str
    result: ResultCode
    error_code: ErrorCode
    score: float
    message: str
    seconds: float


class SoftPlc:
    """An asyncua server exposing ``<prefix>.<Signal>`` variables under ``namespace``.

    Security on, it offers only Basic256Sha256 (Sign, SignAndEncrypt) with its certificate
    ``plc`` from the PKI folder and admits only clients whose certificate the trust list's CA
    signed: an unsigned, self-signed or foreign station is refused (``BadCertificateUntrusted``)."""

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
        """The signal's value, read from the server's memory in the caller's thread as a PLC
        reads its own: ~1 us of CPU, where a hop through the server's event loop took ~100 us
        (at a 1 ms scan, a few ms of CPU per cycle taken from the station under test)."""
        space = self.server.aio_obj.iserver.aspace
        return space.read_attribute_value(
            self.nodes[signal].nodeid, ua.AttributeIds.Value
        ).Value.Value

    def write(self, signal: str, value: Any) -> None:
        self.nodes[signal].write_value(variant(signal, value))

    def wait_for(self, signal: str, value: Any, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.read(signal) != value:
            if time.monotonic() > deadline:
                raise HandshakeTimeout(f"{signal} did not become {value} within {timeout_s} s")
            time.sleep(self.scan_s)

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
            )
        finally:
            self.write("Trigger", False)
        self.wait_for("Done", False, timeout_s)
        return answer
