"""The line PKI folder: made once on first use, private files readable by their owner only."""

from __future__ import annotations

import stat
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from inspection.line.pki import LinePki


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_material_is_made_once_signed_by_the_ca_and_private(tmp_path: Path) -> None:
    pki = LinePki(tmp_path / "pki")
    station = pki.identity("station-cam-1", "urn:inspection:station:cam-1")
    again = LinePki(tmp_path / "pki").identity("station-cam-1", "urn:inspection:station:cam-1")
    assert again.certificate.read_bytes() == station.certificate.read_bytes()  # not re-issued
    ca = x509.load_pem_x509_certificate(pki.ca_file.read_bytes())
    cert = x509.load_pem_x509_certificate(station.certificate.read_bytes())
    cert.verify_directly_issued_by(ca)
    uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert uris.get_values_for_type(x509.UniformResourceIdentifier) == [station.uri]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    plc = pki.identity("plc", "urn:inspection:softplc", server=True)
    server_usage = x509.load_pem_x509_certificate(plc.certificate.read_bytes()).extensions
    assert list(server_usage.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    password = pki.secret("mqtt-cam-1")
    assert len(password) >= 40 and pki.secret("mqtt-cam-1") == password
    assert pki.secret("mqtt-cam-2") != password
    key = pki.signing_key("cam-1")
    assert pki.signing_key("cam-1").public_key() == key.public_key()
    private = [
        tmp_path / "pki" / "ca.key",
        station.private_key,
        tmp_path / "pki" / "secrets" / "mqtt-cam-1",
        tmp_path / "pki" / "signing" / "cam-1.key",
    ]
    assert [_mode(path) for path in private] == [0o600] * len(private)
    assert _mode(tmp_path / "pki") == 0o700


def test_the_ca_publishes_its_crl_and_revokes(tmp_path: Path) -> None:
    """A CRL signed by the CA (what node-opcua needs), kept fresh, with revoked serials."""
    import asyncio
    from datetime import datetime, timedelta, timezone

    import pytest
    from asyncua import ua
    from asyncua.common.utils import ServiceError

    from inspection.line.pki import CRL_DAYS
    from inspection.line.security import trust_list_validator

    pki = LinePki(tmp_path / "pki")
    ca = x509.load_pem_x509_certificate(pki.ca_file.read_bytes())
    crl = x509.load_der_x509_crl(pki.crl_file.read_bytes())
    assert crl.is_signature_valid(ca.public_key()) and crl.issuer == ca.subject
    assert list(crl) == []
    soon = datetime.now(timezone.utc) + timedelta(days=CRL_DAYS - 1)
    assert crl.next_update_utc is not None and crl.next_update_utc > soon
    assert pki.crl_file.read_bytes() == pki.crl_file.read_bytes()  # fresh: not re-signed

    mes = pki.identity("mes", "urn:inspection:mes")
    other = pki.identity("mes-2", "urn:inspection:mes-2")
    pki.revoke(mes.certificate)
    revoked = x509.load_der_x509_crl(pki.crl_file.read_bytes())
    serial = x509.load_pem_x509_certificate(mes.certificate.read_bytes()).serial_number
    assert [entry.serial_number for entry in revoked] == [serial]
    assert revoked.is_signature_valid(ca.public_key())

    async def check(identity) -> None:
        validator = await trust_list_validator(pki, peer="client")
        cert = x509.load_pem_x509_certificate(identity.certificate.read_bytes())
        description = ua.ApplicationDescription(
            ApplicationUri=identity.uri, ApplicationType=ua.ApplicationType.Client
        )
        await validator.validate(cert, description)

    asyncio.run(check(other))  # trusted and not revoked
    with pytest.raises(ServiceError) as refused:
        asyncio.run(check(mes))
    assert refused.value.code == ua.StatusCodes.BadCertificateRevoked
