"""Result sinks: MQTT (paho, QoS 1), OPC UA (asyncua, a String node) and an HTTP webhook.

A sink ``deliver``s one JSON payload and returns only once the other side acknowledged it
(MQTT PUBACK, OPC UA write status Good, HTTP 2xx); anything else raises ``DeliveryError``
and the publisher retries later. Sinks never raise anything else for a failed delivery.
"""

from __future__ import annotations

import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, Protocol

from paho.mqtt.client import MQTTMessageInfo
from paho.mqtt.enums import MQTTErrorCode

from inspection.core.errors import InspectionError
from inspection.line.config import LinkSecurity, SinkConfig
from inspection.line.pki import LinePki
from inspection.line.security import mqtt_client, secure_opcua_client, webhook_headers

log = logging.getLogger(__name__)


class DeliveryError(InspectionError):
    """The sink did not acknowledge a message; it stays in the outbox for a retry."""


class Sink(Protocol):
    """Sends payloads to one destination; ``key`` is the idempotency key (request id).
    ``on_acknowledged(key)``, set by the publisher, is called by a sink whose acknowledgement
    can arrive outside ``deliver`` (MQTT); the others' arrives as ``deliver`` returns."""

    name: str
    on_acknowledged: Callable[[str], None] | None

    def deliver(self, key: str, payload: str) -> None: ...

    def close(self) -> None: ...


class MqttSink:
    """Publishes to ``topic`` with QoS 1 and waits for the broker's PUBACK; while paho's own
    thread reconnects to a broker that is away, new deliveries fail fast (``DeliveryError``).

    Paho keeps a message it sent until its PUBACK and sends it again by itself on
    reconnection: a retry of a ``key`` it still holds waits for that message (paho's own
    ``MQTTMessageInfo``, so a message id paho numbers again after 65,535 messages acknowledges
    nothing else) instead of publishing a second copy. ``on_acknowledged(key)`` is called in
    paho's thread as a PUBACK arrives, before ``deliver`` returns and also for a held message
    whose ``deliver`` already gave up: the publisher marks the outbox there, so a station
    killed after the PUBACK does not send the result again. Not once, and MQTT cannot make it
    so across a crash: a broker ``kill -9``-ed after it forwarded a message but before its
    PUBACK reached the station (or before it saved its state), or a station killed between
    its PUBLISH and that mark, delivers again; receivers dedupe by ``(station_id,
    request_id)``. (QoS 2 would not help: Mosquitto saves its state after acknowledging, and
    a PUBREL it no longer knows is completed anyway, so a broker killed between PUBREC and its
    save loses the message.)"""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        topic: str,
        *,
        security: LinkSecurity,
        user: str,
        timeout_s: float = 5.0,
    ) -> None:
        self.name, self.topic, self.timeout_s = name, topic, timeout_s
        self.on_acknowledged: Callable[[str], None] | None = None
        self._connected = threading.Event()
        self._lock = threading.Lock()  # never held while calling paho: paho holds its own
        self._held: dict[str, MQTTMessageInfo] = {}  # key -> the message paho holds for it
        self._keys: dict[int, str] = {}  # message id -> key, until its PUBACK
        self._client = mqtt_client(security, user)
        self._client.reconnect_delay_set(min_delay=1, max_delay=5)
        self._client.on_connect = lambda *a: None if a[3].is_failure else self._connected.set()
        self._client.on_disconnect = lambda *_a: self._connected.clear()
        self._client.on_publish = self._on_publish
        self._client.connect_async(host, port, keepalive=15)
        self._client.loop_start()
        if not self._connected.wait(timeout_s):
            log.warning(
                "%s: MQTT broker %s:%d not reachable after %.0f s; results wait in the outbox "
                "and are delivered once it is", name, host, port, timeout_s,
            )  # fmt: skip

    def _on_publish(self, _client: Any, _userdata: Any, mid: int, *_reason: Any) -> None:
        """Paho's thread, a PUBACK for ``mid`` (paho marks its message published after this)."""
        with self._lock:
            key = self._keys.pop(mid, None)  # None: the PUBACK beat ``deliver`` noting its id
        if key is not None and self.on_acknowledged is not None:
            self.on_acknowledged(key)

    def deliver(self, key: str, payload: str) -> None:
        if not self._client.is_connected():  # a held message waits for the reconnection
            raise DeliveryError(f"{self.name}: not connected to the MQTT broker")
        info = self._held.get(key)
        if info is None:
            info = self._client.publish(self.topic, payload, qos=1)
            if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:  # the connection just dropped: paho
                info.rc = MQTTErrorCode.MQTT_ERR_SUCCESS  # holds it, as a message it queued
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise DeliveryError(f"{self.name}: paho did not queue {key}: {info.rc.name}")
            with self._lock:
                self._held[key], self._keys[info.mid] = info, key
        info.wait_for_publish(self.timeout_s)
        if not info.is_published():
            raise DeliveryError(
                f"{self.name}: no PUBACK for {key} within {self.timeout_s} s "
                "(held: sent again on reconnection, not published twice)"
            )
        with self._lock:
            del self._held[key]
            if self._keys.get(info.mid) == key:  # its PUBACK came before the id was noted
                del self._keys[info.mid]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class OpcUaSink:
    """Writes the payload to a String variable on an OPC UA server (e.g. the MES gateway)."""

    def __init__(
        self,
        name: str,
        endpoint: str,
        node_id: str,
        *,
        security: LinkSecurity,
        station_id: str,
        timeout_s: float = 5.0,
    ) -> None:
        self.name, self.endpoint, self.node_id = name, endpoint, node_id
        self.timeout_s, self.security, self.station_id = timeout_s, security, station_id
        self.on_acknowledged = None  # the write's status arrives as ``deliver`` returns
        self._client = self._node = None

    def deliver(self, key: str, payload: str) -> None:
        from asyncua import ua  # asyncua (~0.5 s to import) only with an OPC UA sink

        try:
            node = self._connected_node()
            node.write_value(ua.Variant(payload, ua.VariantType.String))
        except Exception as exc:  # asyncua raises many types: all mean "not delivered"
            self.close()  # the next delivery connects again
            raise DeliveryError(
                f"{self.name}: write of {key} to {self.node_id} failed: {exc}"
            ) from exc

    def _connected_node(self):
        if self._node is None:
            from asyncua.sync import Client  # as above: only with an OPC UA sink

            client = Client(self.endpoint, timeout=self.timeout_s)
            self._client = client  # closed (its thread stopped) if what follows fails
            client.tloop.post(secure_opcua_client(client.aio_obj, self.security, self.station_id))
            client.connect()
            self._node = client.get_node(self.node_id)
        return self._node

    def close(self) -> None:
        client, self._client, self._node = self._client, None, None
        if client is not None:
            try:
                client.disconnect()
            except Exception:  # the server may already be gone
                log.debug("%s: disconnect after failure also failed", self.name)
            client.tloop.stop()


class WebhookSink:
    """POSTs the payload as JSON; any 2xx answer is the acknowledgement. With a ``secret``,
    each delivery is signed (``inspection.line.security.webhook_headers``)."""

    def __init__(self, name: str, url: str, *, secret: str | None, timeout_s: float = 5.0) -> None:
        self.name, self.url, self.secret, self.timeout_s = name, url, secret, timeout_s
        self.on_acknowledged = None  # the 2xx arrives as ``deliver`` returns

    def deliver(self, key: str, payload: str) -> None:
        body = payload.encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        if self.secret is not None:
            headers |= webhook_headers(self.secret, body)
        request = urllib.request.Request(self.url, data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            raise DeliveryError(
                f"{self.name}: {self.url} answered HTTP {exc.code} for {key}"
            ) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise DeliveryError(f"{self.name}: {self.url} unreachable: {exc}") from exc
        if not 200 <= status < 300:
            raise DeliveryError(f"{self.name}: {self.url} answered HTTP {status} for {key}")

    def close(self) -> None:
        return None


def _mqtt_sink(config: SinkConfig, station_id: str, security: LinkSecurity) -> Sink:
    topic = config.topic.format(station_id=station_id)
    return MqttSink(config.name, config.host, config.port, topic, security=security,
                    user=station_id, timeout_s=config.timeout_s)  # fmt: skip


def _opcua_sink(config: SinkConfig, station_id: str, security: LinkSecurity) -> Sink:
    endpoint, node_id = config.endpoint or "", config.node_id or ""  # checked by SinkConfig
    return OpcUaSink(config.name, endpoint, node_id, security=security,
                     station_id=station_id, timeout_s=config.timeout_s)  # fmt: skip


def _webhook_sink(config: SinkConfig, _station_id: str, security: LinkSecurity) -> Sink:
    secret = LinePki(security.pki_dir).secret(f"webhook-{config.name}") if security.on else None
    return WebhookSink(config.name, config.url or "", secret=secret, timeout_s=config.timeout_s)


SINKS: dict[str, Callable[[SinkConfig, str, LinkSecurity], Sink]] = {
    "mqtt": _mqtt_sink, "opcua": _opcua_sink, "webhook": _webhook_sink,
}  # fmt: skip
"""Each sink kind's builder (``SinkConfig.kind``)."""


def build_sink(config: SinkConfig, *, station_id: str, security: LinkSecurity) -> Sink:
    """The sink ``config`` describes; topics get ``{station_id}`` filled in. Security on, MQTT
    logs in as the station over TLS, OPC UA uses the station's certificate, webhooks are
    signed with ``<pki_dir>/secrets/webhook-<name>`` (made on first use; give it to the MES)."""
    if config.kind not in SINKS:
        raise ValueError(f"unknown sink kind {config.kind!r}; use {', '.join(SINKS)}")
    return SINKS[config.kind](config, station_id, security)
