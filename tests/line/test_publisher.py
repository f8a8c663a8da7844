"""The publisher against real servers: Mosquitto, a local HTTP endpoint, an asyncua server."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import yaml
from sqlalchemy import select

from inspection.line.config import PublisherConfig, SinkConfig
from inspection.line.mosquitto import MOSQUITTO
from inspection.line.payload import ResultPayload
from inspection.line.pki import LinePki
from inspection.line.publisher import Publisher, backoff_s
from inspection.line.security import WebhookSignatureError, mqtt_client, verify_webhook
from inspection.line.sinks import DeliveryError, MqttSink, WebhookSink, build_sink
from inspection.store.models import OutboxMessage
from inspection.store.outbox import Outbox
from inspection.store.store import Store

from .helpers import (
    Broker,
    Collector,
    free_port,
    need_mosquitto,
    publish_until_killed,
    secure,
    wait_port,
)
from .records import entries, inspection_fields

FAST = PublisherConfig(batch=20, poll_s=0.05, backoff_initial_s=0.1, backoff_max_s=0.5)


def _store_with(tmp_path: Path, n: int, sinks: tuple[str, ...]) -> Store:
    store = Store.migrated(f"sqlite:///{tmp_path / 'line.db'}", tmp_path / "blobs")
    for i in range(n):
        fields = inspection_fields(i)
        store.add_inspection(outbox=entries(fields, sinks), **fields)
    return store


def _wait(condition, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_backoff_doubles_and_is_capped() -> None:
    config = PublisherConfig(backoff_initial_s=1.0, backoff_max_s=8.0)
    assert 1.0 <= backoff_s(1, config) <= 1.2
    assert 4.0 <= backoff_s(3, config) <= 4.8
    assert 8.0 <= backoff_s(10, config) <= 9.6


def test_mqtt_results_survive_a_broker_outage(broker: Broker, tmp_path: Path) -> None:
    store = _store_with(tmp_path, 10, ("mqtt",))
    outbox = Outbox(store)
    topic = "inspection/cam-1/result"  # the station may write only its own topics
    collector = Collector(broker.port, topic, secure(tmp_path))
    sink = MqttSink(
        "mqtt", "127.0.0.1", broker.port, topic, security=secure(tmp_path), user="cam-1",
        timeout_s=2.0,
    )  # fmt: skip
    publisher = Publisher(outbox, {"mqtt": sink}, FAST)
    publisher.start()
    try:
        received = collector.wait_for(10)
        assert len(received) == 10
        _wait(lambda: outbox.backlog()["mqtt"].pending == 0)  # the last PUBACK may trail it
        broker.kill()
        for i in range(10, 20):  # results stored while the broker is away wait in the outbox
            fields = inspection_fields(i)
            store.add_inspection(outbox=entries(fields, ("mqtt",)), **fields)
        publisher.wake()
        time.sleep(0.5)
        assert outbox.backlog()["mqtt"].pending == 10
        broker.start()
        _wait(lambda: outbox.backlog()["mqtt"].pending == 0)
        received = collector.wait_for(20)
    finally:
        publisher.stop()
        sink.close()
        collector.close()
    keys = {ResultPayload.from_json(m).request_id for m in received}
    assert keys == {f"req-{i:05d}" for i in range(20)}
    assert publisher.metrics.failures.labels("mqtt")._value.get() >= 1
    store.engine.dispose()


def _result(request_id: str, station_id: str = "cam-1") -> str:
    return json.dumps({"station_id": station_id, "request_id": request_id})


def _delivered(sink: MqttSink, key: str, payload: str) -> bool:
    """One try of the outbox's: True once the broker acknowledged ``key``."""
    try:
        sink.deliver(key, payload)
    except DeliveryError:
        return False
    return True


def _collector_and_sink(broker: Broker, tmp_path: Path) -> tuple[Collector, MqttSink]:
    """An independent subscriber of cam-1's result topic and cam-1's MQTT sink (1 s PUBACK wait)."""
    topic = "inspection/cam-1/result"
    collector = Collector(broker.port, topic, secure(tmp_path))
    sink = MqttSink(
        "mqtt", "127.0.0.1", broker.port, topic, security=secure(tmp_path), user="cam-1",
        timeout_s=1.0,
    )  # fmt: skip
    return collector, sink


def test_a_retry_after_a_lost_acknowledgement_is_not_published_twice(
    broker: Broker, tmp_path: Path
) -> None:
    """The broker stops (SIGSTOP) with a result sent and not acknowledged, then is killed and
    restarted: paho sends the held message again on reconnection, and the outbox's retry of
    the same key waits for it instead of publishing a second copy."""
    collector, sink = _collector_and_sink(broker, tmp_path)
    try:
        sink.deliver("r-0", _result("r-0"))
        assert len(collector.wait_for(1)) == 1  # before the broker stops (its kill loses it)
        assert broker.process is not None
        os.kill(broker.process.pid, signal.SIGSTOP)
        with pytest.raises(DeliveryError, match="r-1"):
            sink.deliver("r-1", _result("r-1"))
        broker.kill()
        broker.start()
        _wait(lambda: _delivered(sink, "r-1", _result("r-1")))
        sink.deliver("r-2", _result("r-2"))  # after r-1 in the broker's order
        received = collector.wait_for(3)
        time.sleep(0.5)  # a second copy of r-1 would arrive before r-2 or just after it
        received = collector.wait_for(0, 0)
    finally:
        sink.close()
        collector.close()
    assert [json.loads(m)["request_id"] for m in received] == ["r-0", "r-1", "r-2"]


def test_a_reused_message_id_does_not_acknowledge_a_new_result(
    broker: Broker, tmp_path: Path
) -> None:
    """A result acknowledged after its delivery gave up (held, never retried here) leaves no
    acknowledged id behind: when paho numbers a new result with the same id (its counter wraps
    after 65,535 messages), that result still waits for its own PUBACK."""
    collector, sink = _collector_and_sink(broker, tmp_path)
    acknowledged: list[str] = []
    sink.on_acknowledged = acknowledged.append
    assert broker.process is not None
    try:
        sink.deliver("r-0", _result("r-0"))  # paho's message id 1
        os.kill(broker.process.pid, signal.SIGSTOP)
        with pytest.raises(DeliveryError, match="r-1"):
            sink.deliver("r-1", _result("r-1"))  # message id 2, held
        os.kill(broker.process.pid, signal.SIGCONT)
        collector.wait_for(2)
        time.sleep(0.3)  # r-1's PUBACK reaches the sink
        sink._client._last_mid = 1  # paho's counter as 65,535 messages later: r-2 goes as id 2
        os.kill(broker.process.pid, signal.SIGSTOP)
        with pytest.raises(DeliveryError, match="no PUBACK for r-2"):
            sink.deliver("r-2", _result("r-2"))
        assert acknowledged == ["r-0", "r-1"]  # r-1 late, after its delivery gave up; not r-2
    finally:
        os.kill(broker.process.pid, signal.SIGCONT)
        sink.close()
        collector.close()


def _pending(store: Store, key: str) -> tuple[int, bool]:
    """(attempts, still pending) of ``key``'s outbox message to ``mqtt``."""
    query = select(OutboxMessage).where(OutboxMessage.key == key, OutboxMessage.sink == "mqtt")
    with store.session() as session:
        row = session.scalars(query).one()
        return row.attempts, row.delivered_at is None


def test_a_result_acknowledged_late_is_not_sent_again_after_a_station_kill(
    broker: Broker, tmp_path: Path
) -> None:
    """The broker stops (SIGSTOP) with a result sent: the station's delivery gives up and paho
    holds the result. The broker resumes and acknowledges it; the station is killed (kill -9)
    before the outbox's retry and started again. The outbox marked the result delivered when
    its PUBACK came, so the MES gets it once."""
    store = _store_with(tmp_path, 1, ("mqtt",))
    topic = "inspection/cam-1/result"
    collector = Collector(broker.port, topic, secure(tmp_path))
    spawn = multiprocessing.get_context("spawn")
    args = (str(store.engine.url), tmp_path / "blobs", broker.port, secure(tmp_path))
    station = spawn.Process(target=publish_until_killed, args=args)
    station.start()
    assert broker.process is not None
    try:
        _wait(lambda: collector.wait_for(0, 0) != [])  # connected, the first result delivered
        os.kill(broker.process.pid, signal.SIGSTOP)
        fields = inspection_fields(1)
        store.add_inspection(outbox=entries(fields, ("mqtt",)), **fields)
        key = entries(fields, ("mqtt",))[0].key
        _wait(lambda: _pending(store, key) == (1, True))  # no PUBACK: retry in 3 s
        os.kill(broker.process.pid, signal.SIGCONT)
        _wait(lambda: len(collector.wait_for(0, 0)) == 2)
        time.sleep(0.5)  # its PUBACK reaches the station
        station.kill()
        station.join(10)
        station = spawn.Process(target=publish_until_killed, args=args)
        station.start()
        _wait(lambda: not _pending(store, key)[1])
        time.sleep(4.0)  # past the retry time a station that did not know would send it again
    finally:
        os.kill(broker.process.pid, signal.SIGCONT)
        station.kill()
        station.join(10)
        collector.close()
    keys = [ResultPayload.from_json(m).request_id for m in collector.wait_for(0, 0)]
    assert keys == ["req-00000", key]  # r-1 once
    store.engine.dispose()


def test_the_collector_hands_each_result_on_once(broker: Broker, tmp_path: Path) -> None:
    """A redelivered result (same station and request id) is kept as a message and handed on
    once; the same request id from another station is another result."""
    collector = Collector(broker.port, "inspection/+/result", secure(tmp_path))
    stations = {s: mqtt_client(secure(tmp_path), s) for s in ("cam-1", "cam-2")}
    for client in stations.values():
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
    try:
        for station, request_id in (("cam-1", "r-1"), ("cam-1", "r-1"), ("cam-2", "r-1")):
            payload = _result(request_id, station)
            topic = f"inspection/{station}/result"
            stations[station].publish(topic, payload, qos=1).wait_for_publish(5)
        collector.wait_for(3)
    finally:
        for client in stations.values():
            client.disconnect()
            client.loop_stop()
        collector.close()
    assert len(collector.messages) == 3
    assert [json.loads(m)["station_id"] for m in collector.handed_on] == ["cam-1", "cam-2"]


def test_the_site_broker_keeps_a_queued_result_across_its_kill(tmp_path: Path) -> None:
    """``python -m inspection.line.mosquitto`` (the site's and ``scripts/services.sh``'s
    broker) persists: a result queued for an offline MES session survives a ``kill -9``."""
    need_mosquitto()
    config = {"station_id": "cam-1", "default_product": "brick", "core": {"products": ["brick"]},
              "camera": {"kind": "file", "path": "."}, "security": {"pki_dir": str(tmp_path / "pki")}}  # fmt: skip
    (tmp_path / "line.yaml").write_text(yaml.safe_dump(config))
    port, root = free_port(), ["--user", "root"] if os.geteuid() == 0 else []
    conf = subprocess.run(
        [sys.executable, "-m", "inspection.line.mosquitto", "--config", str(tmp_path / "line.yaml"),
         "--port", str(port), "--dir", str(tmp_path / "broker"), *root],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    mes = mqtt_client(secure(tmp_path), "mes", client_id="mes-site", clean_session=False)
    received: list[bytes] = []
    subscribed = threading.Event()
    mes.on_subscribe = lambda *_a: subscribed.set()
    mes.on_message = lambda _c, _u, message: received.append(message.payload)
    broker = subprocess.Popen([MOSQUITTO, "-c", conf])
    try:
        wait_port(port)
        mes.connect("127.0.0.1", port)
        mes.loop_start()
        mes.subscribe("inspection/cam-1/result", qos=1)
        assert subscribed.wait(5)
        mes.disconnect()
        mes.loop_stop()
        station = mqtt_client(secure(tmp_path), "cam-1")
        station.connect("127.0.0.1", port)
        station.loop_start()
        station.publish("inspection/cam-1/result", _result("r-1"), qos=1).wait_for_publish(5)
        station.disconnect()
        station.loop_stop()
        time.sleep(1.0)  # autosave_on_changes: saved after the change
        broker.kill()
        broker.wait(10)
        broker = subprocess.Popen([MOSQUITTO, "-c", conf])
        wait_port(port)
        mes.connect("127.0.0.1", port)
        mes.loop_start()
        _wait(lambda: received != [], 5.0)
    finally:
        mes.disconnect()
        mes.loop_stop()
        broker.kill()
        broker.wait(10)
    assert [json.loads(m)["request_id"] for m in received] == ["r-1"]


def test_mqtt_sink_refuses_fast_without_a_broker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from .helpers import free_port

    port = free_port()
    with caplog.at_level("WARNING", logger="inspection.line.sinks"):
        sink = MqttSink(
            "mqtt", "127.0.0.1", port, "t", security=secure(tmp_path), user="cam-1", timeout_s=0.2
        )
    assert f"MQTT broker 127.0.0.1:{port} not reachable" in caplog.text
    with pytest.raises(DeliveryError, match="not connected"):
        sink.deliver("k", "{}")
    sink.close()


class _Hook(BaseHTTPRequestHandler):
    fail_first = 2
    seen: ClassVar[list[tuple[str, bytes, dict[str, str]]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if _Hook.fail_first > 0:
            _Hook.fail_first -= 1
            self.send_response(503)
        else:
            _Hook.seen.append((self.headers["Idempotency-Key"], body, dict(self.headers)))
            self.send_response(204)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        return None


@pytest.fixture
def hook_url() -> Iterator[str]:
    _Hook.fail_first, _Hook.seen = 2, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/results"
    server.shutdown()


def test_webhook_retries_server_errors_and_sends_signed_bodies_with_the_idempotency_key(
    hook_url: str, tmp_path: Path
) -> None:
    store = _store_with(tmp_path, 3, ("hook",))
    config = SinkConfig(name="hook", kind="webhook", url=hook_url)
    sink = build_sink(config, station_id="cam-1", security=secure(tmp_path))
    assert isinstance(sink, WebhookSink)
    publisher = Publisher(Outbox(store), {"hook": sink}, FAST)
    publisher.start()
    try:
        _wait(lambda: len(_Hook.seen) == 3)
    finally:
        publisher.stop()
    assert [key for key, _, _ in _Hook.seen] == ["req-00000", "req-00001", "req-00002"]
    assert all(json.loads(body)["request_id"] == key for key, body, _ in _Hook.seen)
    secret = LinePki(tmp_path / "pki").secret("webhook-hook")  # what the receiver was given
    for _, body, headers in _Hook.seen:
        verify_webhook(secret, body, headers)
        with pytest.raises(WebhookSignatureError, match="does not match"):
            verify_webhook(secret, body.replace(b'"NG"', b'"OK"'), headers)
        with pytest.raises(WebhookSignatureError, match="does not match"):
            verify_webhook("another secret", body, headers)
        with pytest.raises(WebhookSignatureError, match="s off"):
            verify_webhook(secret, body, headers, now=time.time() + 3600)  # a replay an hour on
    with pytest.raises(WebhookSignatureError, match="no signature"):
        verify_webhook(secret, body, {})
    store.engine.dispose()


def test_webhook_unreachable_is_a_delivery_error() -> None:
    from .helpers import free_port

    sink = WebhookSink("hook", f"http://127.0.0.1:{free_port()}/x", secret=None, timeout_s=1.0)
    with pytest.raises(DeliveryError, match="unreachable"):
        sink.deliver("k", "{}")


class _SlowHook(BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        _SlowHook.seen.append(self.headers["Idempotency-Key"])
        time.sleep(0.5)  # the receiver is slow: the station stops while a delivery is in flight
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        return None


def test_a_graceful_stop_during_a_delivery_sends_it_once(tmp_path: Path) -> None:
    _SlowHook.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowHook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    store = _store_with(tmp_path, 1, ("hook",))
    url = f"http://127.0.0.1:{server.server_address[1]}/results"
    publisher = Publisher(Outbox(store), {"hook": WebhookSink("hook", url, secret=None)}, FAST)
    publisher.start()
    try:
        _wait(lambda: _SlowHook.seen)
        publisher.close()  # the station's stop: the thread's delivery is still waiting
    finally:
        server.shutdown()
    assert _SlowHook.seen == ["req-00000"]
    assert Outbox(store).backlog()["hook"].pending == 0
    store.engine.dispose()
