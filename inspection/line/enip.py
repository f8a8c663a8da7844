"""PLC handshake over EtherNet/IP: the S7/Modbus signals as Rockwell Logix controller tags.

The station is a CIP client (``pylogix``) of the tags ``<tag_prefix><Signal>``
(docs/line-integration.md, "EtherNet/IP handshake"); a string is a NUL-padded SINT array of
ASCII. The cycle, heartbeat and back-off are ``registers``', which runs this link through the
same ``BlockLink``. CIP here has no authentication or encryption: keep the PLC and the station
in one segmented cell network.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

from inspection.line import registers as regs
from inspection.line.config import LineConfig, PolledLinkConfig
from inspection.line.handshake import Answer
from inspection.line.mosquitto import wait_port
from inspection.line.softplc import RegisterPlc

SCALARS = {"Trigger": (0, ">h"), "Ready": (2, ">h"), "Busy": (4, ">h"), "Done": (6, ">h"),
           "Result": (8, ">h"), "ErrorCode": (10, ">h"), "Score": (12, ">f"),
           "Heartbeat": (regs.HEARTBEAT, ">H"), "Replayed": (regs.REPLAYED, ">h")}  # fmt: skip
"""Each scalar signal's offset and format in the ``registers`` block."""
PLC_SIGNALS = frozenset({"Trigger", "Product", "PartId", "RequestId"})
STATION_SIGNALS = (frozenset(SCALARS) | frozenset(regs.STRINGS)) - PLC_SIGNALS


@dataclass(frozen=True)
class EnipConfig(PolledLinkConfig):
    """The ``enip`` section: the Logix controller at ``host`` (CPU in ``slot`` of its chassis),
    its tags named ``<tag_prefix><Signal>``. No authentication or encryption."""

    enabled: bool = False
    port: int = 44818
    slot: int = 0
    tag_prefix: str = "Inspection_"

    link: ClassVar[str] = "enip"


class EnipLink:
    """The handshake block as Logix tags (a ``registers.BlockLink``): ``write`` sends a byte
    range's signals; ``read`` fetches the other side's in one request and answers its ``own`` from
    what it last wrote (or read on connecting: a standing answer)."""

    def __init__(self, config: EnipConfig, own: frozenset[str] = STATION_SIGNALS) -> None:
        from pylogix import PLC  # deferred: only stations that speak EtherNet/IP need it

        self.prefix, self.own = config.tag_prefix, own
        self.plc = PLC(config.host, slot=config.slot, port=config.port, timeout=2.0)
        self.block = bytearray(regs.BLOCK_BYTES)  # the last values read or written
        try:
            self._fetch(self._fields(0, regs.BLOCK_BYTES))
        except Exception:
            self.plc.Close()
            raise

    def _fields(self, offset: int, size: int) -> list[tuple[str, int, int]]:
        """(signal, offset, tag length: 0 for a scalar) of the signals in the byte range."""
        fields = [(name, at, 0) for name, (at, _) in SCALARS.items()]
        fields += [(name, at, capacity) for name, (at, capacity) in regs.STRINGS.items()]
        return [f for f in fields if offset <= f[1] < offset + size]

    def read(self, offset: int, size: int) -> bytes:
        self._fetch([f for f in self._fields(offset, size) if f[0] not in self.own])
        return bytes(self.block[offset : offset + size])

    def _fetch(self, wanted: list[tuple[str, int, int]]) -> None:
        """Read the signals ``wanted`` into ``block`` in one request."""
        tags = [(self._tag(name, n), n) if n else self._tag(name, 0) for name, _, n in wanted]
        replies = self._checked("read", self.plc.Read(tags)) if tags else []
        for (name, at, capacity), reply in zip(wanted, replies, strict=True):
            if capacity:
                text = (
                    bytes(v & 0xFF for v in reply.Value).split(b"\0")[0].decode("ascii", "replace")
                )
                self.block[at : at + capacity + 2] = regs.s7_string(text, capacity)
            else:
                struct.pack_into(SCALARS[name][1], self.block, at, reply.Value)

    def write(self, offset: int, data: bytes) -> None:
        self.block[offset : offset + len(data)] = data
        scalars, strings = [], []
        for name, at, capacity in self._fields(offset, len(data)):
            if capacity:
                text = regs.read_string(bytes(self.block), name).encode("ascii", "replace")
                strings.append((self._tag(name, capacity), list(text.ljust(capacity, b"\0"))))
            else:
                value = struct.unpack_from(SCALARS[name][1], self.block, at)[0]
                scalars.append((self._tag(name, 0), value))
        if scalars:
            self._checked("write", self.plc.Write(scalars))
        for tag, values in strings:
            self._checked("write", [self.plc.Write(tag, values)])

    def _tag(self, name: str, capacity: int) -> str:
        return f"{self.prefix}{name}[0]" if capacity else f"{self.prefix}{name}"

    @staticmethod
    def _checked(action: str, replies: Any) -> list[Any]:
        replies = replies if isinstance(replies, list) else [replies]
        for reply in replies:
            if reply.Status != "Success":
                raise ConnectionError(f"EtherNet/IP {action} of {reply.TagName}: {reply.Status}")
        return replies

    def close(self) -> None:
        self.plc.Close()


serve = partial(regs.RegisterHandshake, open_link=EnipLink)


class EnipPlc(RegisterPlc):
    """A Logix PLC for tests and benches: cpppo's EtherNet/IP server holds the tags and this side
    plays the PLC program; given ``config``, the real PLC there (``station trigger --via enip``)."""

    protocol, label = "enip", "EtherNet/IP (Logix tags)"
    library, unserved = "cpppo", {"tag_prefix": "Missing_"}

    def __init__(self, config: EnipConfig | None = None, *, scan_s: float = 0.001) -> None:
        self.section, self.process = config, None
        super().__init__(scan_s=scan_s)

    def serve(self) -> None:
        if self.section is not None:
            return
        self.section = config = EnipConfig(enabled=True, port=self.port)
        tags = [f"{config.tag_prefix}{name}=DINT" for name in SCALARS if name != "Score"]
        tags += [f"{config.tag_prefix}Score=REAL"]
        tags += [f"{config.tag_prefix}{n}=SINT[{c}]" for n, (_, c) in regs.STRINGS.items()]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cpppo.server.enip", f"--address=127.0.0.1:{self.port}", *tags],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_port(self.port)

    def config(self, **settings: Any) -> EnipConfig:
        assert self.section is not None  # set by serve
        return EnipConfig(**{"enabled": True, "port": self.section.port} | settings)

    def open_link(self) -> EnipLink:
        assert self.section is not None
        return EnipLink(self.section, own=PLC_SIGNALS)

    def shutdown(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)


def enip_trigger(
    config: LineConfig, *, request_id: str, product: str, part_id: str, timeout_s: float
) -> Answer:
    """One trigger written to the PLC's tags as its program would, and the answer read back."""
    plc = EnipPlc(config.link("enip"))
    try:
        plc.connect(timeout_s)
        got = plc.trigger(request_id, product=product, part_id=part_id, timeout_s=timeout_s)
    finally:
        plc.stop()
    return got.answer(product)
