"""Secure line links: MQTT over TLS with a password, OPC UA Basic256Sha256 with a trust list,
signed webhooks. ``LinkSecurity.mode: none`` turns all of it off (announced at start-up).

A webhook receiver checks a delivery with ``verify_webhook(secret, body, headers)``: HMAC-SHA256
over ``<timestamp>.<body>`` with the sink's secret, the timestamp within 5 minutes.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt

from inspection.core.errors import InspectionError
from inspection.line.config import LinkSecurity
from inspection.line.pki import LinePki

if TYPE_CHECKING:  # asyncua takes ~0.5 s to import: only where OPC UA is used
    from asyncua import Client as OpcUaClient
    from asyncua.crypto.validator import CertificateValidator

log = logging.getLogger(__name__)
TIMESTAMP_HEADER, SIGNATURE_HEADER = "X-Inspection-Timestamp", "X-Inspection-Signature"
WEBHOOK_TOLERANCE_S = 300.0


class WebhookSignatureError(InspectionError):
    """A webhook delivery's signature is missing, stale or wrong: the receiver drops it."""


def station_uri(station_id: str) -> str:
    """The OPC UA application URI of a station (in its certificate)."""
    return f"urn:inspection:station:{station_id}"


def insecure_notice(security: LinkSecurity) -> str | None:
    """The start-up announcement of plaintext links, or ``None`` when security is on."""
    if security.on:
        return None
    return (
        "LINE LINKS INSECURE (security.mode: none): OPC UA without signing or encryption, "
        "MQTT without TLS or passwords, webhooks and results unsigned; anyone on the network "
        "can read them or forge a PLC answer"
    )


def mqtt_client(
    security: LinkSecurity, user: str, *, client_id: str | None = None, **options: Any
) -> mqtt.Client:
    """A paho client (MQTT 3.1.1) that, security on, speaks TLS against the local CA and logs
    in as ``user`` with its password from the PKI folder."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id or f"{user}-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv311,
        **options,
    )
    if security.on:
        pki = LinePki(security.pki_dir)
        client.tls_set(ca_certs=str(pki.ca_file))
        client.username_pw_set(user, pki.secret(f"mqtt-{user}"))
    return client


async def secure_opcua_client(client: OpcUaClient, security: LinkSecurity, station_id: str) -> None:
    """Set up an asyncua ``Client`` (before ``connect``): Basic256Sha256 in the configured mode
    with the station's certificate, and the server's certificate checked against the trust
    list (an untrusted PLC is refused as an untrusted station is refused by the PLC)."""
    if not security.on:
        return
    # deferred: asyncua (0.5 s), only for an OPC UA link (line.sinks imports this module)
    from asyncua import ua
    from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

    pki = LinePki(security.pki_dir)
    identity = pki.identity(f"station-{station_id}", station_uri(station_id))
    client.application_uri = identity.uri
    modes = ua.MessageSecurityMode
    mode = modes.Sign if security.mode == "sign" else modes.SignAndEncrypt
    certificate, key = str(identity.certificate), str(identity.private_key)
    await client.set_security(SecurityPolicyBasic256Sha256, certificate, key, mode=mode)
    validator = await trust_list_validator(pki, peer="server")
    client.certificate_validator = validator.validate


async def trust_list_validator(pki: LinePki, *, peer: str) -> CertificateValidator:
    """An asyncua certificate validator: time, URI, key usage, signed by a certificate of the
    trust list (``pki.trusted_dir``) and not on the CA's CRL (``pki.crl_file``, as of now)."""
    # deferred: asyncua (0.5 s), only for an OPC UA link
    from asyncua.crypto.truststore import TrustStore
    from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions

    store = TrustStore([pki.trusted_dir], [pki.crl_file.parent])
    await store.load()
    options = CertificateValidatorOptions
    role = options.PEER_SERVER if peer == "server" else options.PEER_CLIENT
    return CertificateValidator(options.TRUSTED_VALIDATION | role, store)


def webhook_headers(secret: str, body: bytes, *, now: float | None = None) -> dict[str, str]:
    """The signature headers of one webhook delivery."""
    stamp = str(int(now if now is not None else time.time()))
    return {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: "sha256=" + _mac(secret, stamp, body)}


def verify_webhook(
    secret: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: float | None = None,
    tolerance_s: float = WEBHOOK_TOLERANCE_S,
) -> None:
    """Raise ``WebhookSignatureError`` unless ``body`` carries a valid, fresh signature.
    ``headers`` as received (looked up case-insensitively)."""
    lower = {key.lower(): value for key, value in headers.items()}
    stamp = lower.get(TIMESTAMP_HEADER.lower(), "")
    signature = lower.get(SIGNATURE_HEADER.lower(), "")
    if not stamp.isdigit() or not signature.startswith("sha256="):
        raise WebhookSignatureError("webhook: no signature or timestamp header")
    age = (now if now is not None else time.time()) - int(stamp)
    if abs(age) > tolerance_s:
        raise WebhookSignatureError(f"webhook: timestamp {age:.0f} s off (> {tolerance_s:g} s)")
    if not hmac.compare_digest(signature.removeprefix("sha256="), _mac(secret, stamp, body)):
        raise WebhookSignatureError("webhook: signature does not match the body")


def _mac(secret: str, stamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
