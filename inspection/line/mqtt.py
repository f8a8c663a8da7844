"""The handshake over MQTT topics under ``<topic_prefix>`` (``{station_id}`` filled in):
``trigger`` (in, QoS 1, JSON), ``product`` (in, may be retained), ``state`` (out, retained;
``offline`` as last will) and ``answer`` (out, QoS 1, ``inspection.answer/1``).

A malformed trigger is answered ``BAD_TRIGGER`` under the request id it carried. A trigger is
acknowledged only after its answer was published, on a persistent session, so one taken while
the station dies comes again (DUP); that redelivery gets the stored verdict only when its
``part_id`` names the part stored within ``retry_s``, else ``RETRY_UNPROVEN``
(``handshake.replay``). A trigger published again by the PLC (DUP clear) is a new capture.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import timedelta
from typing import Any

import paho.mqtt.client as mqtt

from inspection.core.errors import InspectionError
from inspection.line.config import MqttTriggerConfig
from inspection.line.handshake import (
    Answer,
    Delivery,
    ErrorCode,
    LinkContext,
    Trigger,
    TriggerError,
    claimed_request_id,
)
from inspection.line.security import mqtt_client
from inspection.store.models import utcnow

log = logging.getLogger(__name__)
CONNECT_WAIT_S = 5.0
"""How long ``start`` waits for the broker before warning (it keeps retrying after)."""


class MqttHandshake:
    """Serves triggers from the broker one at a time in a worker thread."""

    def __init__(self, config: MqttTriggerConfig, link: LinkContext) -> None:
        """The ``mqtt`` link (``links.LinkKind.serve``): logs in as the station over TLS unless
        its security says ``none``."""
        station_id, security = link.station_id, link.security
        self.config, self.handler, self.on_answer = config, link.handler, link.counted("mqtt")
        self.prefix = config.topic_prefix.format(station_id=station_id)
        self.connected = threading.Event()
        self.broker = f"{config.host}:{config.port}"
        self._retry = timedelta(seconds=config.retry_s)
        self._away = False  # a warning that the broker is away was logged
        self._queue: queue.Queue[mqtt.MQTTMessage | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._client = mqtt_client(
            security,
            station_id,
            client_id=f"inspection-station-{station_id}",
            clean_session=False,
            manual_ack=True,
        )
        self._client.reconnect_delay_set(min_delay=1, max_delay=5)
        self._client.will_set(f"{self.prefix}/state", "offline", qos=1, retain=True)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = lambda _c, _u, message: self._queue.put(message)

    def start(self) -> None:
        self._worker = threading.Thread(target=self._work, name="mqtt-handshake", daemon=True)
        self._worker.start()
        self._client.connect_async(self.config.host, self.config.port, keepalive=15)
        self._client.loop_start()
        if not self.connected.wait(CONNECT_WAIT_S):
            log.warning(
                "MQTT handshake: no broker connection at %s after %g s; triggers over MQTT "
                "go unanswered until it connects (retrying)",
                self.broker,
                CONNECT_WAIT_S,
            )

    def stop(self) -> None:
        self._queue.put(None)
        if self._worker is not None:
            self._worker.join(10)
            self._worker = None
        if self._client.is_connected():
            self._publish("state", "offline", retain=True)
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT handshake: broker refused the connection: %s", reason)
            return
        client.subscribe([(f"{self.prefix}/trigger", 1), (f"{self.prefix}/product", 1)])
        client.publish(f"{self.prefix}/state", "ready", qos=1, retain=True)
        self.connected.set()
        if self._away:
            self._away = False
            log.info("MQTT handshake: connected to the broker at %s again", self.broker)

    def _on_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        """Warn once per outage; paho retries every 1..5 s."""
        if not self._away:
            self._away = True
            log.warning("MQTT handshake: cannot reach the broker at %s (retrying)", self.broker)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.connected.clear()
        if reason.is_failure:  # not our own disconnect()
            self._away = True
            log.warning(
                "MQTT handshake: lost the broker at %s (%s); triggers go unanswered until "
                "it is back (retrying)",
                self.broker,
                reason,
            )

    def _work(self) -> None:
        while (message := self._queue.get()) is not None:
            try:
                self._serve(message)
            except InspectionError as exc:  # answer not published: no ack, the broker resends
                log.warning("MQTT handshake: %s", exc)
            except Exception:
                log.exception("MQTT handshake: serving %s failed", message.topic)

    def _serve(self, message: mqtt.MQTTMessage) -> None:
        if message.topic.endswith("/product"):
            self._select(message.payload.decode(errors="replace").strip())
            self._client.ack(message.mid, message.qos)
            return
        started = time.perf_counter()
        self._client.publish(f"{self.prefix}/state", "busy", qos=1, retain=True)  # no wait
        try:
            trigger = Trigger.from_json(message.payload)
            delivery = Delivery(retry=True, since=utcnow() - self._retry, redelivered=True) if (
                message.dup
            ) else Delivery()  # fmt: skip
            answer = self.handler.handle(trigger, source="mqtt", delivery=delivery)
        except TriggerError as exc:
            claimed = claimed_request_id(message.payload)
            answer = Answer(claimed, int(ErrorCode.BAD_TRIGGER), str(exc))
        self._publish("answer", answer.to_json())
        self._client.publish(f"{self.prefix}/state", "ready", qos=1, retain=True)
        self._client.ack(message.mid, message.qos)
        self.on_answer(answer, time.perf_counter() - started)

    def _select(self, product: str) -> None:
        """Select ``product``; one this station does not serve is answered on ``answer`` with
        ``UNKNOWN_PRODUCT`` and an empty request id (a selection has none)."""
        try:
            self.handler.select_product(product)
            log.info("MQTT handshake: product %s selected", product)
        except TriggerError as exc:
            log.warning("MQTT handshake: %s", exc)
            refusal = Answer("", int(ErrorCode.UNKNOWN_PRODUCT), str(exc), product=product[:64])
            self._publish("answer", refusal.to_json())

    def _publish(self, leaf: str, payload: str, *, retain: bool = False) -> None:
        info = self._client.publish(f"{self.prefix}/{leaf}", payload, qos=1, retain=retain)
        try:
            info.wait_for_publish(5.0)
        except (RuntimeError, ValueError) as exc:
            raise MqttUnavailable(f"publish to {self.prefix}/{leaf} failed: {exc}") from exc
        if not info.is_published():
            raise MqttUnavailable(f"no PUBACK for {self.prefix}/{leaf} within 5 s")


class MqttUnavailable(InspectionError):
    """The broker did not take a message the handshake had to publish."""
