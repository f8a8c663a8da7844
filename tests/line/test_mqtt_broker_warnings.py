"""The MQTT handshake says when its broker is away: at start, and when a connection is lost."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from inspection.line import mqtt as line_mqtt
from inspection.line.config import MqttTriggerConfig
from inspection.line.handshake import LinkContext
from inspection.line.mqtt import MqttHandshake

from .helpers import Broker, free_port, private_broker, secure


def _handshake(port: int, root: Path) -> MqttHandshake:
    config = MqttTriggerConfig(enabled=True, port=port)
    uncounted = lambda _via: lambda _answer, _seconds: None  # noqa: E731
    link = LinkContext(None, "cam-1", secure(root), None, uncounted)  # type: ignore[arg-type]
    return MqttHandshake(config, link)


def _warned(caplog: pytest.LogCaptureFixture, text: str, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(text in r.getMessage() for r in caplog.records if r.levelno >= logging.INFO):
            return True
        time.sleep(0.05)
    return False


def test_an_unreachable_broker_is_named_at_start(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(line_mqtt, "CONNECT_WAIT_S", 0.5)
    port = free_port()  # nothing listens there
    handshake = _handshake(port, tmp_path)
    with caplog.at_level(logging.WARNING, logger="inspection.line.mqtt"):
        handshake.start()
        try:
            assert not handshake.connected.is_set()
            assert _warned(caplog, f"no broker connection at 127.0.0.1:{port} after 0.5 s")
            assert _warned(caplog, f"cannot reach the broker at 127.0.0.1:{port}")
        finally:
            handshake.stop()
    cannot = [r for r in caplog.records if "cannot reach" in r.getMessage()]
    assert len(cannot) == 1  # once per outage, not once per retry


def test_a_lost_broker_is_warned_and_its_return_noted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker: Broker = private_broker(tmp_path)
    broker.start()
    handshake = _handshake(broker.port, tmp_path)
    with caplog.at_level(logging.INFO, logger="inspection.line.mqtt"):
        handshake.start()
        try:
            assert handshake.connected.is_set()
            assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
            broker.kill()
            assert _warned(caplog, f"lost the broker at 127.0.0.1:{broker.port}")
            broker.start()
            assert _warned(caplog, f"connected to the broker at 127.0.0.1:{broker.port} again")
        finally:
            handshake.stop()
            broker.kill()
