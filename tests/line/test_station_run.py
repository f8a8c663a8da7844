"""A running line station against a real asyncua server (the soft PLC) and a real Mosquitto."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from bench._shared import camera_folder, line_config
from inspection.line.config import (
    PLC_USER,
    LinkSecurity,
    MqttTriggerConfig,
    OpcUaTriggerConfig,
    PublisherConfig,
    SinkConfig,
)
from inspection.line.handshake import Answer, ErrorCode, ResultCode
from inspection.line.payload import ResultPayload
from inspection.line.pki import LinePki
from inspection.line.security import mqtt_client
from inspection.line.softplc import SoftPlc
from inspection.line.station import LineStation

from .helpers import Broker, Collector, free_port, secure


class _AnswerClient:
    """The MES/PLC side of the MQTT handshake: publishes triggers, collects answers."""

    def __init__(self, port: int, root: Path) -> None:
        self.answers: list[Answer] = []
        self._got = threading.Condition()
        self.client = mqtt_client(secure(root), PLC_USER)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("inspection/cam-1/answer", qos=1)
        self.client.loop_start()

    def _on_message(self, _c, _u, message) -> None:
        with self._got:
            self.answers.append(Answer.from_json(message.payload))
            self._got.notify_all()

    def trigger(self, payload: str, timeout_s: float = 10.0, leaf: str = "trigger") -> Answer:
        count = len(self.answers)
        self.client.publish(f"inspection/cam-1/{leaf}", payload, qos=1).wait_for_publish(5)
        with self._got:
            assert self._got.wait_for(lambda: len(self.answers) > count, timeout_s)
            return self.answers[count]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_station_answers_the_plc_over_opcua_and_mqtt_and_publishes_results(
    broker: Broker, tmp_path: Path, fp32_bundle: Path, tiny_product: Path
) -> None:
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/plc"
    plc = SoftPlc(endpoint, security=secure(tmp_path))
    plc.start()
    config = line_config(
        tmp_path,
        fp32_bundle,
        camera_folder(tmp_path, tiny_product),
        opcua=OpcUaTriggerConfig(enabled=True, endpoint=endpoint),
        mqtt=MqttTriggerConfig(enabled=True, port=broker.port),
        sinks=(SinkConfig(name="mes", kind="mqtt", port=broker.port),),
        publisher=PublisherConfig(poll_s=0.05, backoff_initial_s=0.1, backoff_max_s=0.5),
    )
    results = Collector(broker.port, "inspection/cam-1/result", secure(tmp_path))
    station = LineStation.build(config)
    station.start()
    answers = _AnswerClient(broker.port, tmp_path)
    try:
        assert station.links["opcua"].connected.wait(10)
        assert plc.read("Ready") is True
        beat = plc.read("Heartbeat")
        time.sleep(0.6)  # the station counts Heartbeat up every 250 ms: the PLC's watchdog
        assert plc.read("Heartbeat") >= beat + 2
        first = plc.trigger(request_id="o-1", part_id="part-1")
        assert (first.request_id, first.error_code) == ("o-1", ErrorCode.NONE)
        assert first.result in (ResultCode.OK, ResultCode.NG) and first.seconds > 0
        assert plc.read("Done") is False and plc.read("Result") == 0  # reset after Trigger fell
        plc.write("Replayed", True)  # a PLC that did not clear it: written on every answer
        again = plc.trigger(request_id="o-1", part_id="part-1")  # acknowledged: a re-inspection
        assert again.error_code == ErrorCode.NONE and not (again.replayed or first.replayed)
        reused = plc.trigger(request_id="o-1", part_id="part-9")  # the id again, a new part
        assert (reused.request_id, reused.error_code) == ("o-1", ErrorCode.NONE)
        made_up = plc.trigger(part_id="part-2")  # no RequestId from the PLC: the station's own
        assert made_up.error_code == ErrorCode.NONE and len(made_up.request_id) == 20
        selected = plc.trigger(request_id="o-3", product="grass")
        assert (selected.result, selected.error_code) == (ResultCode.ERROR, ErrorCode.NO_MODEL)

        over_mqtt = answers.trigger(json.dumps({"request_id": "m-1", "part_id": "part-3"}))
        assert over_mqtt.error_code == ErrorCode.NONE and over_mqtt.verdict in ("OK", "NG")
        retried = answers.trigger(json.dumps({"request_id": "m-1", "part_id": "part-3"}))
        assert retried.inspection_id != over_mqtt.inspection_id  # published anew: a capture
        assert not (retried.replayed or over_mqtt.replayed)
        wrapped = answers.trigger(json.dumps({"request_id": "m-1", "part_id": "part-4"}))
        assert wrapped.request_id == "m-1" and wrapped.inspection_id != over_mqtt.inspection_id
        unreadable = answers.trigger("{oops")
        assert (unreadable.request_id, unreadable.error_code) == ("", ErrorCode.BAD_TRIGGER)
        misspelt = answers.trigger('{"request_id": "m-9", "prodct": "brick"}')
        assert (misspelt.request_id, misspelt.error_code) == ("m-9", ErrorCode.BAD_TRIGGER)
        assert "unknown key(s) 'prodct'" in misspelt.message
        unknown = answers.trigger("weave", leaf="product")
        assert (unknown.error_code, unknown.product) == (ErrorCode.UNKNOWN_PRODUCT, "weave")
        answers.client.publish("inspection/cam-1/product", "grass", qos=1).wait_for_publish(5)
        assert answers.trigger('{"request_id": "m-2"}').error_code == ErrorCode.NO_MODEL

        delivered = results.wait_for(7)
    finally:
        answers.close()
        station.stop()
        results.close()
        plc.stop()
    payloads = [ResultPayload.from_json(m) for m in delivered]
    ids = sorted(p.request_id for p in payloads)  # a reused id's result: its fresh key
    assert [i.split("~")[0] for i in ids] == sorted(
        ["o-1", "o-1", "o-1", made_up.request_id, "m-1", "m-1", "m-1"]
    )
    assert len(set(ids)) == 7
    station_key = LinePki(tmp_path / "pki").signing_key("cam-1").public_key()
    for payload in payloads:  # each result names its bundle and carries the station's signature
        assert payload.bundle_id == "v0001-fp32"
        payload.verify(station_key)
    triggers = station.metrics.triggers
    assert triggers.labels("opcua", "NO_MODEL")._value.get() == 1
    assert triggers.labels("mqtt", "BAD_TRIGGER")._value.get() == 2


def test_a_redelivered_trigger_is_replayed_only_for_its_named_part(
    broker: Broker, tmp_path: Path, fp32_bundle: Path, tiny_product: Path
) -> None:
    """Mosquitto redelivers (DUP) the triggers a station took and never acknowledged before it
    died. Back, the station answers the one that names its stored part with the stored verdict
    (``replayed``) and refuses the one with only a request id it used before (``RETRY_UNPROVEN``):
    the part it meant may have left the camera. Neither fires the camera."""
    config = line_config(
        tmp_path, fp32_bundle, camera_folder(tmp_path, tiny_product),
        mqtt=MqttTriggerConfig(enabled=True, port=broker.port),
    )  # fmt: skip
    station = LineStation.build(config)
    station.start()
    answers = _AnswerClient(broker.port, tmp_path)
    try:
        first = answers.trigger(json.dumps({"request_id": "m-1"}))
        named = answers.trigger(json.dumps({"request_id": "m-2", "part_id": "p-2"}))
        station.stop()
        taken = _take_without_ack(broker.port, tmp_path, [
            {"request_id": "m-1"}, {"request_id": "m-2", "part_id": "p-2"}], answers)  # fmt: skip
        count = len(answers.answers)
        station = LineStation.build(config)
        station.start()
        with answers._got:
            assert answers._got.wait_for(lambda: len(answers.answers) >= count + 2, 20)
        unproven, replayed = answers.answers[count : count + 2]
    finally:
        answers.close()
        station.stop()
    assert taken == [True, True]  # first deliveries (DUP clear); the station's came with DUP
    assert first.verdict is not None and not first.replayed
    assert (unproven.request_id, unproven.error_code) == ("m-1", ErrorCode.RETRY_UNPROVEN)
    assert not unproven.replayed and unproven.verdict is None
    assert (replayed.request_id, replayed.inspection_id) == ("m-2", named.inspection_id)
    assert replayed.replayed and replayed.verdict == named.verdict
    assert station.core.store.count_inspections() == 2  # no capture after the restart


def _take_without_ack(
    port: int, root: Path, triggers: list[dict], plc: _AnswerClient
) -> list[bool]:
    """A station that takes ``triggers`` (published by ``plc``) and dies before acknowledging
    them: its session keeps them in flight. Whether each was a first delivery (DUP clear)."""
    got: list[bool] = []
    done = threading.Event()
    client = mqtt_client(secure(root), "cam-1", client_id="inspection-station-cam-1",
                         clean_session=False, manual_ack=True)  # fmt: skip

    def on_message(_c, _u, message) -> None:
        got.append(not message.dup)
        if len(got) == len(triggers):
            done.set()

    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    for trigger in triggers:
        plc.client.publish("inspection/cam-1/trigger", json.dumps(trigger), qos=1)
    assert done.wait(10)
    client.disconnect()
    client.loop_stop()
    return got


def test_an_opcua_answer_standing_when_the_station_connects_is_left_for_the_plc(
    tmp_path: Path, fp32_bundle: Path, tiny_product: Path
) -> None:
    """The PLC server holds Trigger and Done high (the station died after answering): the
    station connects, fires no camera, leaves the answer and waits for Trigger to fall.
    Security off: the handshake is the point here (certificates: the test above)."""
    endpoint, plain = f"opc.tcp://127.0.0.1:{free_port()}/plc", LinkSecurity(mode="none")
    plc = SoftPlc(endpoint, security=plain)
    plc.start()
    for signal, value in (("Trigger", True), ("Done", True), ("AnswerRequestId", "s-1")):
        plc.write(signal, value)
    config = line_config(tmp_path, fp32_bundle, camera_folder(tmp_path, tiny_product),
                         opcua=OpcUaTriggerConfig(enabled=True, endpoint=endpoint),
                         security=plain)  # fmt: skip
    station = LineStation.build(config)
    station.start()
    try:
        assert station.links["opcua"].connected.wait(10)
        time.sleep(0.3)  # the subscription's first notification: Trigger high
        standing = [plc.read(s) for s in ("Ready", "Done", "AnswerRequestId")]
        plc.write("Trigger", False)
        plc.wait_for("Done", False, 5)
        answer = plc.trigger(request_id="s-2")
    finally:
        station.stop()
        plc.stop()
    assert standing == [True, True, "s-1"]
    assert answer.request_id == "s-2" and not answer.replayed
    assert station.core.store.count_inspections() == 1
