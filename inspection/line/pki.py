"""The line links' security material, made on first use in ``security.pki_dir`` (a site with
its own CA puts its files there under the same names; nothing here is committed):

- ``ca.pem`` / ``ca.key``: the CA; ``trusted/ca.der``: the OPC UA trust list.
- ``crl/ca-crl.der``: the CA's revocation list, signed again at half its ``CRL_DAYS`` or on
  ``revoke`` (node-opcua refuses a CA without one).
- ``<name>.pem`` / ``<name>-key.pem``: RSA 2048 application certificates (Basic256Sha256).
- ``secrets/<user>``: MQTT passwords and webhook HMAC secrets.
- ``signing/<station>.key`` / ``.pub``: the station's Ed25519 result-signing key.

Every private file is written mode 0600 under a lock, so two processes starting together make
one CA, not two.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from asyncua.crypto import cert_gen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID

from inspection.core.signing import create_pair, load_private_key

CA_NAME = "inspection line CA (local)"
DAYS = 825
CRL_DAYS = 30


@dataclass(frozen=True)
class Identity:
    """One application's certificate and key (PEM files) and the URI its certificate names."""

    certificate: Path
    private_key: Path
    uri: str


class LinePki:
    """Certificates, secrets and signing keys of the line links, created when first asked for."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def ca_file(self) -> Path:
        return self._ca()[0]

    @property
    def trusted_dir(self) -> Path:
        """The OPC UA trust list: certificates (here the CA) whose signees are trusted."""
        self._ca()
        return self.root / "trusted"

    def identity(self, name: str, uri: str, *, server: bool = False) -> Identity:
        """``name``'s certificate signed by the CA (made on first use); ``uri`` goes in its
        subject alternative names with the loopback address and this host's name."""
        cert, key = self.root / f"{name}.pem", self.root / f"{name}-key.pem"
        ca_cert, ca_key = self._load_ca()  # before the lock: making the CA takes it too
        with self._locked():
            if not (cert.exists() and key.exists()):
                private = cert_gen.generate_private_key()
                usage = [
                    ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
                ]
                request = cert_gen.generate_app_certificate_signing_request(
                    private, name, {}, _alt_names(uri), usage
                )
                signed = cert_gen.sign_certificate_request(request, ca_cert, ca_key, days=DAYS)
                write_private(key, cert_gen.dump_private_key_as_pem(private))
                cert.write_bytes(signed.public_bytes(serialization.Encoding.PEM))
        return Identity(cert, key, uri)

    @property
    def crl_file(self) -> Path:
        """The CA's CRL (DER), signed again when missing or past half its validity."""
        path = self.root / "crl" / "ca-crl.der"  # asyncua loads *.der / *.pem
        ca_cert, ca_key = self._load_ca()
        with self._locked():
            crl = x509.load_der_x509_crl(path.read_bytes()) if path.exists() else None
            now = datetime.now(timezone.utc)
            half = timedelta(days=CRL_DAYS / 2)
            if crl is None or crl.next_update_utc is None or crl.next_update_utc - now < half:
                _write_crl(path, ca_cert, ca_key, list(crl or []))
        return path

    def revoke(self, certificate: Path) -> None:
        """Revoke a certificate this CA signed (a PEM file): its serial joins the CRL, signed
        at once. Peers checking against ``crl_file`` refuse it from their next load."""
        revoked = x509.load_pem_x509_certificate(certificate.read_bytes())
        ca_cert, ca_key = self._load_ca()
        path = self.crl_file
        with self._locked():
            entries = list(x509.load_der_x509_crl(path.read_bytes()))
            entry = (
                x509.RevokedCertificateBuilder()
                .serial_number(revoked.serial_number)
                .revocation_date(datetime.now(timezone.utc))
                .build()
            )
            _write_crl(path, ca_cert, ca_key, [*entries, entry])

    def secret(self, user: str) -> str:
        """The shared secret of ``user`` (an MQTT password, a webhook key), made on first use."""
        path = self.root / "secrets" / user
        with self._locked():
            if not path.exists():
                write_private(path, secrets.token_urlsafe(32).encode())
        return path.read_text().strip()

    def signing_key(self, station_id: str) -> Ed25519PrivateKey:
        """The Ed25519 key ``station_id`` signs its results with (public half: ``signing_public``)."""
        private = self.root / "signing" / f"{station_id}.key"
        with self._locked():
            if not private.exists():
                private.parent.mkdir(exist_ok=True, mode=0o700)
                create_pair(private, self.signing_public(station_id), force=False)
        return load_private_key(private)

    def signing_public(self, station_id: str) -> Path:
        return self.root / "signing" / f"{station_id}.pub"

    def _ca(self) -> tuple[Path, Path]:
        cert, key = self.root / "ca.pem", self.root / "ca.key"
        with self._locked():
            if not (cert.exists() and key.exists()):
                private = cert_gen.generate_private_key()
                ca = cert_gen.generate_self_signed_app_certificate(
                    private, CA_NAME, {}, [], extended=[], days=DAYS
                )
                write_private(key, cert_gen.dump_private_key_as_pem(private))
                cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
                trusted = self.root / "trusted"
                trusted.mkdir(exist_ok=True)
                (trusted / "ca.der").write_bytes(ca.public_bytes(serialization.Encoding.DER))
        return cert, key

    def _load_ca(self) -> tuple[x509.Certificate, object]:
        cert, key = self._ca()
        return (
            x509.load_pem_x509_certificate(cert.read_bytes()),
            serialization.load_pem_private_key(key.read_bytes(), password=None),
        )

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """An exclusive lock on the folder (not re-entrant: never nest it)."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        with (self.root / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _alt_names(uri: str) -> list[x509.GeneralName]:
    return [
        x509.UniformResourceIdentifier(uri),
        x509.DNSName("localhost"),
        x509.DNSName(socket.gethostname()),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]


def _write_crl(
    path: Path, ca: x509.Certificate, key: object, revoked: list[x509.RevokedCertificate]
) -> None:
    now = datetime.now(timezone.utc)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.subject)
        .last_update(now - timedelta(minutes=5))  # peers whose clock is a little behind
        .next_update(now + timedelta(days=CRL_DAYS))
    )
    for entry in revoked:
        builder = builder.add_revoked_certificate(entry)
    crl = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(crl.public_bytes(serialization.Encoding.DER))
    temporary.replace(path)  # readers never see half a list


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` readable by its owner only (a new file is never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
