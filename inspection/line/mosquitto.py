"""A Mosquitto configured for the line, and an MQTT results collector: the station's
counterparts for tests, benches, ``scripts/softplc_local.py`` and ``scripts/services.sh``.

Security on, the broker takes TLS only, refuses anonymous clients and checks each user's
password and the per-station ACL (``acl_text``); ``python -m inspection.line.mosquitto --help``
writes such a configuration for a site.
"""

from __future__ import annotations

import argparse
import json
import os
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

from inspection.line.config import MES_USER, PLC_USER, LinkSecurity, load_line_config
from inspection.line.pki import LinePki, write_private
from inspection.line.security import mqtt_client

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
TOPIC_PREFIX = "inspection/{station_id}"


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


def acl_text(topic_prefix: str = TOPIC_PREFIX) -> str:
    """Mosquitto ACL: a station (user = its station id) reads its own triggers and product
    selection and writes its own state, answers and results, nothing of another station;
    the PLC writes triggers and reads answers; the MES reads results."""
    own = topic_prefix.replace("{station_id}", "%u")
    every = topic_prefix.replace("{station_id}", "+")
    lines = [f"pattern read {own}/{leaf}" for leaf in ("trigger", "product")]
    lines += [f"pattern write {own}/{leaf}" for leaf in ("state", "answer", "result")]
    lines += [f"user {PLC_USER}"] + [
        f"topic write {every}/{leaf}" for leaf in ("trigger", "product")
    ]
    lines += [f"topic read {every}/{leaf}" for leaf in ("state", "answer")]
    lines += [f"user {MES_USER}", f"topic read {every}/result"]
    return "\n".join(lines) + "\n"


def broker_config(
    folder: Path,
    port: int,
    *,
    security: LinkSecurity,
    stations: tuple[str, ...] = (),
    persistent: bool = False,
    user: str | None = None,
) -> Path:
    """Write ``mosquitto.conf`` (and, security on, the broker's certificate, key, password and ACL
    files) to ``folder`` for a broker on 127.0.0.1:``port``; returns its path. ``user``: the
    account a root-started Mosquitto runs as, given the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)  # passwords and the broker key
    # set_tcp_nodelay: small QoS 1 messages leave at once instead of waiting on Nagle's
    # algorithm (it halves the trigger-to-answer p95).
    lines = [f"listener {port} 127.0.0.1", "set_tcp_nodelay true"]
    if user is not None:
        lines.append(f"user {user}")
    if security.on:
        lines += _secure_lines(folder, LinePki(security.pki_dir), stations)
    else:
        lines.append("allow_anonymous true")
    if persistent:  # sessions and queued messages survive a restart (saved on every change)
        lines += [f"persistence true\npersistence_location {folder}/", "autosave_interval 1"]
        lines.append("autosave_on_changes true")
    else:
        lines.append("persistence false")
    conf = folder / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    if user is not None and os.geteuid() == 0:
        for path in (folder, *folder.iterdir()):
            shutil.chown(path, user)
    return conf


def _secure_lines(folder: Path, pki: LinePki, stations: tuple[str, ...]) -> list[str]:
    broker = pki.identity("broker", "urn:inspection:broker", server=True)
    for source, name in ((pki.ca_file, "ca.pem"), (broker.certificate, "broker.pem")):
        shutil.copyfile(source, folder / name)
    write_private(folder / "broker-key.pem", broker.private_key.read_bytes())
    users = (*stations, PLC_USER, MES_USER)
    passwords = "".join(f"{u}:{pki.secret(f'mqtt-{u}')}\n" for u in users)
    write_private(folder / "passwd", passwords.encode())
    subprocess.run(
        [MOSQUITTO_PASSWD, "-U", str(folder / "passwd")], check=True, capture_output=True
    )
    (folder / "acl").write_text(acl_text())
    return [
        f"cafile {folder / 'ca.pem'}",
        f"certfile {folder / 'broker.pem'}",
        f"keyfile {folder / 'broker-key.pem'}",
        "tls_version tlsv1.2",
        "allow_anonymous false",
        f"password_file {folder / 'passwd'}",
        f"acl_file {folder / 'acl'}",
    ]


class Broker:
    """A private Mosquitto on a free loopback port that a test may stop and start again;
    security on unless ``security`` says ``none`` (users: ``stations``, plc, mes)."""

    def __init__(
        self,
        workdir: Path,
        *,
        persistent: bool = False,
        security: LinkSecurity | None = None,
        stations: tuple[str, ...] = (),
    ) -> None:
        if not Path(MOSQUITTO).exists():
            raise FileNotFoundError(f"{MOSQUITTO} not found: scripts/services.sh installs it")
        self.port = free_port()
        self.security = security or LinkSecurity(pki_dir=workdir / "pki")
        # Run by root, the broker keeps root's rights to read the test's private temp folder.
        self.conf = broker_config(
            workdir,
            self.port,
            security=self.security,
            stations=stations,
            persistent=persistent,
            user="root" if os.geteuid() == 0 else None,
        )
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
    """Subscribes to ``topic`` as the MES would (persistent session, QoS 1): keeps every
    message as it arrived (``messages``) and hands on each result once (``handed_on``), by its
    idempotency key ``(station_id, request_id)``: MQTT delivers again after a broker or station
    ``kill -9``, and a receiver dedupes (docs/line-integration.md, "Results and delivery
    guarantees")."""

    port: int
    topic: str
    security: LinkSecurity
    messages: list[bytes] = field(default_factory=list)
    handed_on: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Condition()
        self._subscribed = threading.Event()
        self._seen: set[tuple[str, str]] = set()
        self.client = mqtt_client(
            self.security, MES_USER, client_id=f"collector-{uuid.uuid4().hex[:8]}",
            clean_session=False,
        )  # fmt: skip
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect_async("127.0.0.1", self.port, keepalive=15)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError(f"collector could not subscribe to {self.topic}")

    def _on_connect(self, client: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            return
        client.subscribe(self.topic, qos=1)
        self._subscribed.set()

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        result = json.loads(message.payload)
        key = (result.get("station_id", ""), result.get("request_id", ""))
        with self._lock:
            self.messages.append(message.payload)
            if key not in self._seen:
                self._seen.add(key)
                self.handed_on.append(message.payload)
            self._lock.notify_all()

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[bytes]:
        with self._lock:
            self._lock.wait_for(lambda: len(self.messages) >= count, timeout_s)
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def main() -> None:
    """Write a secure broker configuration for the stations of ``--config`` line files."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--config", action="append", default=[], help="line.yaml (repeatable)")
    parser.add_argument("--port", type=int, default=8883)
    parser.add_argument("--dir", type=Path, required=True, help="where to write the files")
    parser.add_argument("--user", default=None, help="account the broker runs as (root starts it)")
    args = parser.parse_args()
    configs = [load_line_config(path) for path in args.config]
    if not configs:
        parser.error("give at least one --config")
    security = configs[0].security
    stations = tuple(sorted({config.station_id for config in configs}))
    # persistence on: queued results survive the broker's restart (docs/line-integration.md)
    conf = broker_config(
        args.dir, args.port, security=security, stations=stations, persistent=True, user=args.user
    )
    print(conf)


if __name__ == "__main__":
    main()
