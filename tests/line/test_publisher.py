"""The publisher against real servers: Mosquitto, a local HTTP endpoint, an asyncua server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from inspection.line.config import PublisherConfig, SinkConfig
from inspection.line.payload import ResultPayload
from inspection.line.pki import LinePki
from inspection.line.publisher import Publisher, backoff_s
from inspection.line.security import WebhookSignatureError, verify_webhook
from inspection.line.sinks import DeliveryError, MqttSink, WebhookSink, build_sink
from inspection.store.outbox import Outbox
from inspection.store.store import Store

from .helpers import Broker, Collector, secure
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
