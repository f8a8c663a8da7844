"""PLC handshake over OPC UA: the station is a client of the PLC's OPC UA server.

Signals are variables ``ns=<namespace index>;s=<prefix>.<Signal>``: the PLC writes ``Trigger``,
``Product``, ``PartId``, ``RequestId``; the station ``Ready``, ``Busy``, ``Done``, ``Result``,
``ErrorCode``, ``Score``, ``AnswerRequestId``, ``Message``, ``Heartbeat`` and ``Replayed``
(types and cycle: docs/line-integration.md). A Trigger already high when the station connects
is a new cycle, unless Done is high too: that answer stands until Trigger falls.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from asyncua import Client, ua

from inspection.line.config import OpcUaTriggerConfig
from inspection.line.handshake import Cycles, LinkContext, Trigger
from inspection.line.security import secure_opcua_client

log = logging.getLogger(__name__)

PLC_SIGNALS: dict[str, ua.VariantType] = {
    "Trigger": ua.VariantType.Boolean,
    "Product": ua.VariantType.String,
    "PartId": ua.VariantType.String,
    "RequestId": ua.VariantType.String,
}
STATION_SIGNALS: dict[str, ua.VariantType] = {
    "Ready": ua.VariantType.Boolean,
    "Busy": ua.VariantType.Boolean,
    "Done": ua.VariantType.Boolean,
    "Result": ua.VariantType.Int16,
    "ErrorCode": ua.VariantType.Int16,
    "Score": ua.VariantType.Double,
    "AnswerRequestId": ua.VariantType.String,
    "Message": ua.VariantType.String,
    "Heartbeat": ua.VariantType.UInt16,
    "Replayed": ua.VariantType.Boolean,
}
SIGNALS = PLC_SIGNALS | STATION_SIGNALS
DEFAULTS: dict[ua.VariantType, Any] = {
    ua.VariantType.Boolean: False,
    ua.VariantType.String: "",
    ua.VariantType.Int16: 0,
    ua.VariantType.UInt16: 0,
    ua.VariantType.Double: 0.0,
}


def signal_node_id(namespace_index: int, prefix: str, signal: str) -> ua.NodeId:
    return ua.NodeId(f"{prefix}.{signal}", namespace_index)


def variant(signal: str, value: Any) -> ua.Variant:
    return ua.Variant(value, SIGNALS[signal])


class _Changes:
    """asyncua subscription handler: Trigger values into a queue (runs on the client loop)."""

    def __init__(self, queue: asyncio.Queue[bool]) -> None:
        self.queue = queue

    def datachange_notification(self, _node: Any, value: Any, _data: Any) -> None:
        self.queue.put_nowait(bool(value))


class LoopThread:
    """Runs ``_main(ready)`` in a daemon thread with its own event loop: ``start`` waits up to
    ``wait_s`` for ``ready``; ``stop`` sets ``_stop`` on that loop and joins up to ``wait_s``."""

    thread_name = "opcua"
    wait_s = 10.0
    _thread: threading.Thread | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event | None = None

    async def _main(self, ready: threading.Event) -> None:
        raise NotImplementedError

    async def _run(self, ready: threading.Event) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        await self._main(ready)

    def start(self) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._run(ready)), name=self.thread_name, daemon=True
        )
        self._thread.start()
        ready.wait(self.wait_s)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(self.wait_s)
            self._thread = None


_SESSION_GONE = frozenset(
    {
        "BadSessionIdInvalid", "BadSessionClosed", "BadSecureChannelClosed",
        "BadConnectionClosed", "BadServerNotConnected", "BadCommunicationError", "BadTimeout",
    }
)  # fmt: skip
"""Status codes of a session that ended (the heartbeat stops quietly; ``_serve`` reconnects)."""


class OpcUaHandshake(LoopThread):
    """Runs the handshake in its own thread and event loop; reconnects while the PLC is away."""

    thread_name = "opcua-handshake"

    def __init__(self, config: OpcUaTriggerConfig, link: LinkContext) -> None:
        """The ``opcua`` link (``links.LinkKind.serve``), secured by
        ``security.secure_opcua_client``."""
        self.config, self.handler = config, link.handler
        self.station_id, self.security = link.station_id, link.security
        self.on_answer = link.counted("opcua")  # (answer, seconds from the trigger edge to Done)
        self.connected = threading.Event()
        self._turned = time.monotonic()  # the serve loop's last turn: a stalled one, no beats
        self.cycles = Cycles(config.retry_s)

    async def _main(self, ready: threading.Event) -> None:
        assert self._stop is not None
        ready.set()
        delay = 0.5
        while not self._stop.is_set():
            try:
                await self._session()
                delay = 0.5
            except Exception as exc:  # PLC down, network, server restart: reconnect
                log.warning("OPC UA handshake with %s: %s", self.config.endpoint, exc)
            self.connected.clear()
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
            except TimeoutError:
                delay = min(delay * 2, 5.0)

    async def _session(self) -> None:
        assert self._stop is not None
        client = Client(self.config.endpoint, timeout=5)
        await secure_opcua_client(client, self.security, self.station_id)
        await client.connect()
        try:
            ns = await client.get_namespace_index(self.config.namespace)
            nodes = {
                name: client.get_node(signal_node_id(ns, self.config.node_prefix, name))
                for name in SIGNALS
            }
            standing = await self._standing(client, nodes)
            if standing:
                await self._write(client, nodes, Ready=True)
            else:
                await self._write(client, nodes, Busy=False, Done=False, Result=0, Ready=True)
            self._turned = time.monotonic()
            beating = asyncio.create_task(self._beats(client, nodes["Heartbeat"]))
            queue: asyncio.Queue[bool] = asyncio.Queue()
            subscription = await client.create_subscription(
                self.config.sampling_ms, _Changes(queue)
            )
            await subscription.subscribe_data_change(nodes["Trigger"])
            self.connected.set()
            log.info("OPC UA handshake: connected to %s", self.config.endpoint)
            try:
                await self._serve(client, nodes, queue, high=standing)
            finally:
                beating.cancel()
            await self._write(client, nodes, Ready=False)
        finally:
            await client.disconnect()

    async def _beats(self, client: Client, node: Any) -> None:
        """Count ``Heartbeat`` up every ``heartbeat_ms`` while the serve loop turns (it may stand for
        up to the handler's timeout in one cycle); a PLC that refuses the write is logged once per
        session as an error: it cannot see a dead or hung station."""
        period = self.config.heartbeat_ms / 1000
        stalled_s = self.handler.timeout_s + period + 1.0  # 1 s: the serve loop's idle wait
        count = 0
        while True:
            if time.monotonic() - self._turned > stalled_s:
                await asyncio.sleep(period)  # hung: the PLC's watchdog sees the count stand
                continue
            count = (count + 1) % 65536
            try:
                await client.write_values([node], [variant("Heartbeat", count)])
            except ua.UaStatusCodeError as exc:
                if type(exc).__name__ in _SESSION_GONE:  # _serve sees it and reconnects
                    log.debug("OPC UA heartbeat: %s", exc)
                    return
                log.error(  # no such node, not writable, access denied: a map to fix
                    "OPC UA handshake: the PLC refuses writes to %s (%s): it cannot see a dead "
                    "or hung station; add it (UInt16, writable by the station) to its signals",
                    node.nodeid.to_string(),
                    exc,
                )
                return
            except Exception as exc:  # the session is gone: _serve sees it and reconnects
                log.debug("OPC UA heartbeat: %s", exc)
                return
            await asyncio.sleep(self.config.heartbeat_ms / 1000)

    async def _standing(self, client: Client, nodes: dict[str, Any]) -> bool:
        """Whether Trigger and Done are both high: an answer the PLC has not acknowledged."""
        read = await client.read_attributes(
            [nodes[name] for name in ("Trigger", "Done", "AnswerRequestId", "Replayed")]
        )
        for value in read:  # a PLC without Replayed fails here, at connect
            value.StatusCode.check()
        trigger, done, answered = (value.Value.Value for value in read[:3])
        if trigger and done:
            log.warning("OPC UA handshake: Trigger is high with the answer to %r standing "
                        "(Done = 1): no new cycle until Trigger falls", answered)  # fmt: skip
        return bool(trigger and done)

    async def _serve(
        self, client: Client, nodes: dict[str, Any], queue: asyncio.Queue[bool], *, high: bool
    ) -> None:
        assert self._stop is not None
        while not self._stop.is_set():
            self._turned = time.monotonic()
            try:
                value = await asyncio.wait_for(queue.get(), 1.0)
            except TimeoutError:
                await client.check_connection()  # raises once the PLC connection is gone
                await nodes["Ready"].read_value()
                continue
            if value and not high:
                await self._cycle(client, nodes)
            elif not value and high:
                self.cycles.trigger_fell()
                await self._write(client, nodes, Done=False, Result=0)
            high = value

    async def _cycle(self, client: Client, nodes: dict[str, Any]) -> None:
        started = time.perf_counter()
        await self._write(client, nodes, Busy=True, Done=False)
        product, part_id, request_id = await client.read_values(
            [nodes["Product"], nodes["PartId"], nodes["RequestId"]]
        )
        trigger = Trigger(request_id or None, product or None, part_id or None)
        delivery = self.cycles.delivery(trigger)
        loop = asyncio.get_running_loop()
        answer = await loop.run_in_executor(
            None, lambda: self.handler.handle(trigger, source="opcua", delivery=delivery)
        )
        self.cycles.answered(answer)
        await self._write(
            client,
            nodes,
            Result=int(answer.result),
            ErrorCode=answer.error_code,
            Score=float(answer.score or 0.0),
            AnswerRequestId=answer.request_id,
            Message=answer.message[:500],
            Replayed=answer.replayed,  # every answer, before Done
        )
        await self._write(client, nodes, Busy=False, Done=True)
        self.on_answer(answer, time.perf_counter() - started)

    @staticmethod
    async def _write(client: Client, nodes: dict[str, Any], **values: Any) -> None:
        await client.write_values(
            [nodes[name] for name in values], [variant(n, v) for n, v in values.items()]
        )
