"""A private Mosquitto and an MQTT results collector: the line station's counterparts for
tests, benches (``bench/line.py``) and a local soft-PLC run (``scripts/softplc_local.sh``)."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


class Broker:
    """A private Mosquitto on a free loopback port that a test may stop and start again."""

    def __init__(self, workdir: Path, *, persistent: bool = False) -> None:
        if not Path(MOSQUITTO).exists():
            raise FileNotFoundError(f"{MOSQUITTO} not found: scripts/services.sh installs it")
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        # set_tcp_nodelay: small QoS 1 messages leave at once instead of waiting on Nagle's
        # algorithm (issue #29 measured trigger -> answer p95 88 ms without, 44 ms with it).
        conf = f"listener {self.port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"
        if persistent:  # sessions and queued messages survive a restart (saved on every change)
            conf += f"persistence true\npersistence_location {workdir}/\nautosave_interval 1\n"
            conf += "autosave_on_changes true\n"
        self.conf.write_text(conf)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_port(self.port)

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.process = None


@dataclass
class Collector:
    """Subscribes to ``topic`` and keeps every message (QoS 1, so nothing acknowledged is lost)."""

    port: int
    topic: str
    messages: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"collector-{uuid.uuid4().hex[:8]}",
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect_async("127.0.0.1", self.port, keepalive=15)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError(f"collector could not subscribe to {self.topic}")

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe(self.topic, qos=1)
        self._subscribed.set()

    def _on_message(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(message.payload)
            self._lock.notify_all()

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[bytes]:
        with self._lock:
            self._lock.wait_for(lambda: len(self.messages) >= count, timeout_s)
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
