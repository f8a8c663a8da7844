"""The PLC's side of one handshake, as a client: ``inspection station trigger`` for commissioning.

``opcua_trigger`` writes the PLC server's signals as the PLC program would (with the station's
certificate); ``mqtt_trigger`` publishes a trigger as the ``plc`` MQTT user and waits for the
answer with the same request id (``MqttPlc``, which the line bench keeps open).
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import paho.mqtt.client as mqtt
from asyncua.sync import Client

from inspection.line.config import PLC_USER, LineConfig, LinkSecurity
from inspection.line.handshake import Answer, ErrorCode, ResultCode
from inspection.line.opcua import signal_node_id, variant
from inspection.line.security import mqtt_client, secure_opcua_client
from inspection.line.softplc import HandshakeTimeout, PlcAnswer, wait_until


class MqttPlc:
    """The PLC's end of the MQTT link: publishes triggers on ``<prefix>/trigger`` as the ``plc``
    user and collects the station's answers on ``<prefix>/answer`` by request id."""

    def __init__(self, host: str, port: int, prefix: str, security: LinkSecurity) -> None:
        self.prefix = prefix
        self.answers: dict[str, tuple[Answer, float]] = {}
        self._cv = threading.Condition()
        self.client = mqtt_client(security, PLC_USER)
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.subscribe(f"{prefix}/answer", qos=1)
        self.client.loop_start()

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        answer = Answer.from_json(message.payload)
        with self._cv:
            self.answers[answer.request_id] = (answer, time.perf_counter())
            self._cv.notify_all()

    def trigger(
        self, request_id: str, *, product: str | None = None, part_id: str | None = None,
        timeout_s: float = 15.0,
    ) -> tuple[Answer, float]:  # fmt: skip
        """The answer to ``request_id`` and the seconds from publishing to receiving it."""
        started = time.perf_counter()
        trigger = {"request_id": request_id, "product": product, "part_id": part_id}
        self.client.publish(f"{self.prefix}/trigger", json.dumps(trigger), qos=1)
        with self._cv:
            if not self._cv.wait_for(lambda: request_id in self.answers, timeout_s):
                raise HandshakeTimeout(
                    f"no answer to {request_id} on {self.prefix}/answer in {timeout_s} s"
                )
            answer, at = self.answers[request_id]
        return answer, at - started

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def mqtt_trigger(
    config: LineConfig, *, request_id: str, product: str, part_id: str, timeout_s: float
) -> Answer:
    section = config.link("mqtt")
    prefix = section.topic_prefix.format(station_id=config.station_id)
    plc = MqttPlc(section.host, section.port, prefix, config.security)
    try:
        request_id = request_id or f"cli-{uuid.uuid4().hex[:12]}"
        answer, _ = plc.trigger(
            request_id, product=product or None, part_id=part_id or None, timeout_s=timeout_s
        )
        return answer
    finally:
        plc.close()


def opcua_trigger(
    config: LineConfig, *, request_id: str, product: str, part_id: str, timeout_s: float
) -> Answer:
    section = config.link("opcua")
    client = Client(section.endpoint, timeout=timeout_s)
    client.tloop.post(secure_opcua_client(client.aio_obj, config.security, config.station_id))
    client.connect()
    try:
        ns = client.get_namespace_index(section.namespace)
        nodes = {
            name: client.get_node(signal_node_id(ns, section.node_prefix, name))
            for name in ("Trigger", "Product", "PartId", "RequestId", "Done", "Result",
                         "ErrorCode", "Score", "AnswerRequestId", "Message", "Replayed")
        }  # fmt: skip
        for name, value in (("RequestId", request_id), ("Product", product), ("PartId", part_id)):
            nodes[name].write_value(variant(name, value))
        nodes["Trigger"].write_value(variant("Trigger", True))
        try:
            started = time.monotonic()
            wait_until(nodes["Done"].read_value, timeout_s, 0.005, "Done did not rise")
            got = PlcAnswer(nodes["AnswerRequestId"].read_value(),
                            ResultCode(nodes["Result"].read_value()),
                            ErrorCode(nodes["ErrorCode"].read_value()),
                            float(nodes["Score"].read_value()), nodes["Message"].read_value(),
                            time.monotonic() - started, bool(nodes["Replayed"].read_value()))  # fmt: skip
            return got.answer(product)
        finally:
            nodes["Trigger"].write_value(variant("Trigger", False))
    finally:
        client.disconnect()
