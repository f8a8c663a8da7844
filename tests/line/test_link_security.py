"""Secure line links: who cannot reach the PLC, the broker or the MES, and what is announced
when security is switched off. Real servers: the soft PLC (asyncua) and a private Mosquitto."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from prometheus_client import generate_latest

from bench._shared import camera_folder, line_config
from inspection.line.config import PLC_USER, LinkSecurity
from inspection.line.payload import PayloadError, ResultPayload, payload_of
from inspection.line.pki import LinePki
from inspection.line.security import (
    insecure_notice,
    mqtt_client,
    secure_opcua_client,
    station_uri,
)
from inspection.line.softplc import SoftPlc
from inspection.line.station import LineStation

from .helpers import Broker, free_port, secure
from .records import inspection_fields


@pytest.fixture
def plc(tmp_path: Path):
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/plc"
    server = SoftPlc(endpoint, security=secure(tmp_path))
    server.start()
    yield server
    server.stop()


async def _read_state(endpoint: str, setup) -> int:
    client = Client(endpoint, timeout=5)
    await setup(client)
    async with client:
        return await client.nodes.server_state.read_value()


def test_the_plc_admits_a_trusted_station_and_refuses_others(plc: SoftPlc, tmp_path: Path) -> None:
    async def trusted(client: Client) -> None:
        await secure_opcua_client(client, secure(tmp_path), "cam-1")

    async def foreign(client: Client) -> None:  # a certificate the site's CA did not sign
        identity = LinePki(tmp_path / "rogue").identity("station-cam-1", station_uri("cam-1"))
        client.application_uri = identity.uri
        await client.set_security(
            SecurityPolicyBasic256Sha256, str(identity.certificate), str(identity.private_key)
        )

    async def plain(_client: Client) -> None:  # security policy None, no certificate
        return None

    assert asyncio.run(_read_state(plc.endpoint, trusted)) == 0  # ServerState Running
    with pytest.raises(ua.UaStatusCodeError, match="BadCertificateUntrusted"):
        asyncio.run(_read_state(plc.endpoint, foreign))
    with pytest.raises(ua.UaError, match="No matching endpoints"):
        asyncio.run(_read_state(plc.endpoint, plain))


def test_the_station_refuses_a_plc_it_does_not_trust(tmp_path: Path) -> None:
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/plc"
    rogue = SoftPlc(endpoint, security=LinkSecurity(pki_dir=tmp_path / "rogue"))
    rogue.start()
    try:

        async def station(client: Client) -> None:
            await secure_opcua_client(client, secure(tmp_path), "cam-1")

        with pytest.raises(ua.UaStatusCodeError, match="BadCertificateUntrusted"):
            asyncio.run(_read_state(endpoint, station))
    finally:
        rogue.stop()


class _Listener:
    """The PLC's MQTT side: reads answers of every station."""

    def __init__(self, port: int, root: Path) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.seen = threading.Condition()
        self.client = mqtt_client(secure(root), PLC_USER)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("inspection/+/answer", qos=1)
        self.client.loop_start()

    def _on_message(self, _c, _u, message) -> None:
        with self.seen:
            self.got.append((message.topic, message.payload))
            self.seen.notify_all()

    def wait_for(self, payload: bytes, timeout_s: float) -> bool:
        with self.seen:
            return self.seen.wait_for(lambda: any(p == payload for _, p in self.got), timeout_s)


def _connected(client: mqtt.Client, port: int) -> mqtt.Client:
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def test_forged_answers_do_not_reach_the_plc(broker: Broker, tmp_path: Path) -> None:
    listener = _Listener(broker.port, tmp_path)
    cam1 = _connected(mqtt_client(secure(tmp_path), "cam-1"), broker.port)
    cam2 = _connected(mqtt_client(secure(tmp_path), "cam-2"), broker.port)
    try:
        # another station (valid login) forges cam-1's answer: the ACL drops it
        cam2.publish("inspection/cam-1/answer", b'{"forged": "OK"}', qos=1).wait_for_publish(5)
        cam1.publish("inspection/cam-1/answer", b'{"genuine": 1}', qos=1).wait_for_publish(5)
        assert listener.wait_for(b'{"genuine": 1}', 5.0)
        assert not listener.wait_for(b'{"forged": "OK"}', 1.0)
        assert [topic for topic, _ in listener.got] == ["inspection/cam-1/answer"]
    finally:
        for client in (cam1, cam2, listener.client):
            client.disconnect()
            client.loop_stop()


def _refused_connack(client: mqtt.Client, port: int) -> str:
    outcome: list[str] = []
    done = threading.Event()

    def on_connect(_c, _u, _f, reason, _p) -> None:
        outcome.append(str(reason))
        done.set()

    client.on_connect = on_connect
    client.on_connect_fail = lambda *_a: (outcome.append("connect failed"), done.set())
    # a plaintext client on the TLS port: the broker drops the connection, with no CONNACK
    client.on_disconnect = lambda *_a: (outcome.append("dropped"), done.set())
    client.connect_async("127.0.0.1", port)
    client.loop_start()
    done.wait(5)
    client.disconnect()
    client.loop_stop()
    return outcome[0] if outcome else "no answer"


def test_the_broker_refuses_anonymous_wrong_password_and_plaintext_clients(
    broker: Broker, tmp_path: Path
) -> None:
    ca = str(LinePki(tmp_path / "pki").ca_file)
    anonymous = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    anonymous.tls_set(ca_certs=ca)
    assert _refused_connack(anonymous, broker.port) == "Not authorized"
    guessed = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    guessed.tls_set(ca_certs=ca)
    guessed.username_pw_set("plc", "guess")
    assert _refused_connack(guessed, broker.port) == "Not authorized"
    plaintext = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    plaintext.username_pw_set("plc", LinePki(tmp_path / "pki").secret("mqtt-plc"))
    assert _refused_connack(plaintext, broker.port) != "Success"
    genuine = mqtt_client(secure(tmp_path), PLC_USER)
    assert _refused_connack(genuine, broker.port) == "Success"


def test_a_result_signature_catches_an_altered_verdict(tmp_path: Path) -> None:
    pki = LinePki(tmp_path / "pki")
    key = pki.signing_key("cam-1")
    signed = payload_of(inspection_fields(3), timings_ms={}).signed(key)
    received = ResultPayload.from_json(signed.to_json())
    received.verify(key.public_key())
    assert received.bundle_id == "v0001-int8" and received.signer
    altered = json.loads(signed.to_json()) | {"verdict": "OK"}
    with pytest.raises(PayloadError, match="bad signature"):
        ResultPayload.from_json(json.dumps(altered)).verify(key.public_key())
    other = LinePki(tmp_path / "other").signing_key("cam-1").public_key()
    with pytest.raises(PayloadError, match="signed by key"):
        received.verify(other)
    with pytest.raises(PayloadError, match="not signed"):
        dataclasses.replace(received, signature="").verify(key.public_key())


def test_security_none_is_announced_at_start(
    tmp_path: Path, fp32_bundle: Path, tiny_product: Path
) -> None:
    off = LinkSecurity(mode="none", pki_dir=tmp_path / "pki")
    config = line_config(tmp_path, fp32_bundle, camera_folder(tmp_path, tiny_product), security=off)
    station = LineStation.build(config)
    try:
        assert station.startup_warnings()[0] == insecure_notice(off)
        assert "LINE LINKS INSECURE" in station.status()["link_security"]["insecure"]
        assert b"inspection_line_insecure 1.0" in generate_latest(station.registry)
    finally:
        station.stop()
    secure_station = LineStation.build(dataclasses.replace(config, security=secure(tmp_path)))
    try:
        assert not any("INSECURE" in w for w in secure_station.startup_warnings())
        assert secure_station.status()["link_security"] == {
            "mode": "sign_and_encrypt",
            "insecure": None,
        }
        assert b"inspection_line_insecure 0.0" in generate_latest(secure_station.registry)
    finally:
        secure_station.stop()
