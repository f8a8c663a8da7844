"""A metrics_port that cannot be bound stops the station with the key and port named."""

from __future__ import annotations

import socket

import pytest
from prometheus_client import CollectorRegistry

from inspection.core.errors import ConfigError
from inspection.line.station import serve_metrics


def test_a_busy_metrics_port_names_the_key_and_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as raised:
            serve_metrics(port, CollectorRegistry())
    message = str(raised.value)
    assert message.startswith(
        f"line config: metrics_port {port}: cannot listen on 127.0.0.1:{port}"
    )
    assert "in use" in message and "Errno" not in message
