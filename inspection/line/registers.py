"""PLC handshake over Siemens S7 or Modbus TCP, for PLCs without an OPC UA server: the OPC UA
handshake's signals in one block of PLC memory that the station polls (``python-snap7``,
``pymodbus``). Integers are 16-bit and ``Score`` a 32-bit float, big-endian; strings are S7
``STRING[n]``, so the same bytes serve a Modbus master (register = address + offset / 2). The
map and the cycle are docs/line-integration.md's; neither protocol authenticates.

Ready cannot show a dead station (it stays 1 after ``kill -9``): the PLC supervises
``Heartbeat``, counted up from its own thread while the poll loop is alive. A session that
fails before serving once is retried after a back-off; one that broke reconnects at once.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

from inspection.core.background import Background
from inspection.line.config import ModbusConfig, PolledLinkConfig, S7Config
from inspection.line.handshake import Answer, Cycles, LinkContext, Trigger
from inspection.store.outbox import backoff_s

log = logging.getLogger(__name__)

BLOCK_BYTES = 212
POLLED_BYTES = 208  # what the station reads on a rising Trigger: every field to Message
STATUS = 2  # offset of Ready .. Score: the station's fixed fields
HEARTBEAT = 208
REPLAYED = 210
STRINGS = {"Product": (16, 30), "PartId": (48, 30), "RequestId": (80, 30),
           "AnswerRequestId": (112, 30), "Message": (144, 62)}  # fmt: skip


class BlockLink(Protocol):
    """The PLC memory block: read ``size`` bytes at ``offset``, write bytes at ``offset``."""

    def read(self, offset: int, size: int) -> bytes: ...

    def write(self, offset: int, data: bytes) -> None: ...

    def close(self) -> None: ...


class S7Link:
    """One S7 data block through ``python-snap7``."""

    def __init__(self, config: S7Config) -> None:
        # deferred: snap7, only on stations that speak S7
        import snap7

        self.db = config.db
        self.client = snap7.client.Client()
        self.client.connect(config.host, config.rack, config.slot, config.port)

    def read(self, offset: int, size: int) -> bytes:
        return bytes(self.client.db_read(self.db, offset, size))

    def write(self, offset: int, data: bytes) -> None:
        self.client.db_write(self.db, offset, bytearray(data))

    def close(self) -> None:
        self.client.disconnect()


class ModbusLink:
    """Holding registers from ``address`` through ``pymodbus`` (two bytes per register)."""

    def __init__(self, config: ModbusConfig) -> None:
        # deferred: pymodbus, only on stations that speak Modbus
        from pymodbus.client import ModbusTcpClient

        self.address, self.unit = config.address, config.unit
        self.client = ModbusTcpClient(config.host, port=config.port, timeout=2)
        if not self.client.connect():
            raise ConnectionError(f"no Modbus TCP server at {config.host}:{config.port}")

    def read(self, offset: int, size: int) -> bytes:
        count = size // 2  # at most 125 registers per request: the block is 105
        reply = self.client.read_holding_registers(
            self.address + offset // 2, count=count, device_id=self.unit
        )
        if reply.isError():
            raise ConnectionError(f"Modbus read of {count} registers: {reply}")
        return struct.pack(f">{count}H", *reply.registers)

    def write(self, offset: int, data: bytes) -> None:
        words = list(struct.unpack(f">{len(data) // 2}H", data))
        reply = self.client.write_registers(self.address + offset // 2, words, device_id=self.unit)
        if reply.isError():
            raise ConnectionError(f"Modbus write of {len(words)} registers: {reply}")

    def close(self) -> None:
        self.client.close()


def s7_string(text: str, capacity: int) -> bytes:
    """``text`` as S7 ``STRING[capacity]`` (cut to fit; non-ASCII replaced)."""
    data = text.encode("ascii", "replace")[:capacity]
    return bytes([capacity, len(data)]) + data.ljust(capacity, b"\0")


def read_string(block: bytes, name: str) -> str:
    offset, capacity = STRINGS[name]
    length = min(block[offset + 1], capacity)
    return block[offset + 2 : offset + 2 + length].decode("ascii", "replace")


def _word(block: bytes, offset: int) -> int:
    return struct.unpack_from(">h", block, offset)[0]


def status_bytes(*, ready: bool, busy: bool, done: bool, answer: Answer | None = None) -> bytes:
    """Offsets 2..15: Ready, Busy, Done, Result, ErrorCode, Score."""
    result, code, score = (0, 0, 0.0) if answer is None else (
        int(answer.result), int(answer.error_code), float(answer.score or 0.0)
    )  # fmt: skip
    return struct.pack(">5hf", ready, busy, done, result, code, score)


class _Locked:
    """A ``BlockLink`` shared by the poll loop and the heartbeat thread, one call at a time."""

    def __init__(self, link: BlockLink) -> None:
        self.link, self.lock = link, threading.Lock()

    def read(self, offset: int, size: int) -> bytes:
        with self.lock:
            return self.link.read(offset, size)

    def write(self, offset: int, data: bytes) -> None:
        with self.lock:
            self.link.write(offset, data)


class RegisterHandshake:
    """Polls the PLC block every ``poll_ms`` and counts ``Heartbeat`` up in another thread,
    reconnecting while the PLC is away; ``open_link`` connects. ``serve_s7``, ``serve_modbus``
    and ``enip.serve`` are the links' ``links.LinkKind.serve``."""

    def __init__(
        self, config: PolledLinkConfig, link: LinkContext, open_link: Callable[[Any], BlockLink]
    ) -> None:
        self.config, self.handler, self._link = config, link.handler, open_link
        self.via = config.link
        self.on_answer = link.counted(self.via)
        self.connected = threading.Event()
        self.beats = 0  # the Heartbeat count last written
        self.cycles = Cycles(config.retry_s)
        self._polled = 0.0  # time.monotonic() of the poll loop's last turn
        self._worker = Background(f"{self.via}-handshake", self._run, join_s=10.0)
        self._stop = self._worker.stopping

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        self._worker.stop()

    def _run(self) -> None:
        failures = 0  # sessions in a row that failed before serving
        while not self._stop.is_set():
            link: BlockLink | None = None
            try:
                link = self._link(self.config)
                self._serve(_Locked(link))
            except Exception as exc:  # PLC unreachable, a wrong block, or the session broke
                log.warning("%s handshake with %s: %s", self.via, self.config.host, exc)
            finally:
                served = self.connected.is_set()
                self.connected.clear()
                if link is not None:
                    link.close()
            failures = 0 if served else failures + 1
            if failures:
                self._stop.wait(backoff_s(failures, self.config))

    def _serve(self, link: _Locked) -> None:
        """One session: a first heartbeat and Ready (an address error surfaces here, before
        the session counts as served), then poll until stopped or the link fails."""
        self._beat(link)
        block = link.read(0, POLLED_BYTES)
        standing = _word(block, 0) != 0 and _word(block, 6) != 0  # Trigger and Done high
        if standing:
            log.warning("%s handshake: Trigger is high with the answer to %r standing (Done = "
                        "1): no new cycle until Trigger falls", self.via,
                        read_string(block, "AnswerRequestId"))  # fmt: skip
            link.write(STATUS, struct.pack(">h", 1))  # Ready; the answer stays as it is
        else:
            link.write(STATUS, status_bytes(ready=True, busy=False, done=False))
        self.connected.set()
        self._polled = time.monotonic()
        log.info("%s handshake: connected to %s:%d", self.via, self.config.host, self.config.port)
        ended = threading.Event()
        beating = threading.Thread(
            target=self._beats, args=(link, ended), name=f"{self.via}-heartbeat", daemon=True
        )
        beating.start()
        try:
            self._poll(link, high=standing)
        finally:
            ended.set()
            beating.join()

    def _poll(self, link: _Locked, *, high: bool) -> None:
        """Read Trigger every ``poll_ms``; on its rising edge the strings the PLC wrote before it."""
        while not self._stop.wait(self.config.poll_ms / 1000):
            self._polled = time.monotonic()
            trigger = struct.unpack(">h", link.read(0, 2))[0] != 0
            if trigger and not high:
                self._cycle(link, link.read(0, POLLED_BYTES))
            elif not trigger and high:
                self.cycles.trigger_fell()
                link.write(STATUS, status_bytes(ready=True, busy=False, done=False))
            high = trigger
        link.write(STATUS, status_bytes(ready=False, busy=False, done=False))

    def _beats(self, link: _Locked, ended: threading.Event) -> None:
        """Count Heartbeat up while the poll loop turns: it may stand in one cycle for up to
        the handler's timeout (its answer is due by then), never longer."""
        period = self.config.heartbeat_ms / 1000
        stalled_s = self.handler.timeout_s + period + self.config.poll_ms / 1000
        while not ended.wait(period):
            if time.monotonic() - self._polled > stalled_s:
                continue  # a hung poll loop: let the PLC see the count stand still
            try:
                self._beat(link)
            except Exception as exc:  # the poll loop sees the broken link too and reconnects
                log.debug("%s heartbeat: %s", self.via, exc)
                return

    def _beat(self, link: _Locked) -> None:
        self.beats = (self.beats + 1) % 65536
        link.write(HEARTBEAT, struct.pack(">H", self.beats))

    def _cycle(self, link: _Locked, block: bytes) -> None:
        started = time.perf_counter()
        link.write(STATUS, status_bytes(ready=True, busy=True, done=False))
        product, part_id, request_id = (
            read_string(block, name) for name in ("Product", "PartId", "RequestId")
        )
        trigger = Trigger(request_id or None, product or None, part_id or None)
        answer = self.handler.handle(
            trigger, source=self.via, delivery=self.cycles.delivery(trigger)
        )
        self.cycles.answered(answer)
        texts = [(answer.request_id, "AnswerRequestId"), (answer.message, "Message")]
        answer_at = STRINGS["AnswerRequestId"][0]  # Message follows it
        link.write(answer_at, b"".join(s7_string(t, STRINGS[n][1]) for t, n in texts))
        link.write(REPLAYED, struct.pack(">h", answer.replayed))  # every answer, before Done
        link.write(STATUS, status_bytes(ready=True, busy=False, done=True, answer=answer))
        self.on_answer(answer, time.perf_counter() - started)


serve_s7 = partial(RegisterHandshake, open_link=S7Link)
serve_modbus = partial(RegisterHandshake, open_link=ModbusLink)
