"""The PLC's end of the MQTT link (``line.plc.MqttPlc``, ``station trigger --via mqtt`` and the
line bench): each trigger gets the answer with its own request id, or a timeout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inspection.line.handshake import Answer, ErrorCode
from inspection.line.plc import MqttPlc
from inspection.line.security import mqtt_client
from inspection.line.softplc import HandshakeTimeout

from .helpers import Broker, secure

PREFIX = "inspection/cam-1"


def test_each_trigger_gets_the_answer_with_its_request_id(broker: Broker, tmp_path: Path) -> None:
    """The station side (user ``cam-1``) answers another request first, then the trigger's own;
    a trigger it never answers times out."""
    station = mqtt_client(secure(tmp_path), "cam-1")

    def answer(_c: object, _u: object, message) -> None:
        trigger = json.loads(message.payload)
        if trigger["request_id"] == "ignored":
            return
        for request_id in ("someone-else", trigger["request_id"]):
            reply = Answer(request_id, ErrorCode.NONE, product=trigger["product"], verdict="OK")
            station.publish(f"{PREFIX}/answer", reply.to_json(), qos=1)

    station.on_message = answer
    station.connect("127.0.0.1", broker.port)
    station.subscribe(f"{PREFIX}/trigger", qos=1)
    station.loop_start()
    plc = MqttPlc("127.0.0.1", broker.port, PREFIX, secure(tmp_path))
    try:
        got, seconds = plc.trigger("r-1", product="brick", part_id="p-1", timeout_s=10)
        assert (got.request_id, got.product, got.verdict) == ("r-1", "brick", "OK")
        assert seconds > 0
        with pytest.raises(HandshakeTimeout, match="no answer to ignored"):
            plc.trigger("ignored", timeout_s=0.5)
    finally:
        plc.close()
        station.disconnect()
        station.loop_stop()
