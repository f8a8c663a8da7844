"""Real servers for the line tests: a private Mosquitto per test (``inspection.line.mosquitto``),
skipped outside CI when Mosquitto is not installed. Security is on, as in production: the test's
PKI folder is ``<tmp>/pki`` (made on first use), shared by the broker, PLC and station."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from inspection.line.config import LinkSecurity
from inspection.line.mosquitto import MOSQUITTO, Broker, Collector, free_port, wait_port

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
STATIONS = ("cam-1", "cam-2")
__all__ = ["Broker", "Collector", "free_port", "private_broker", "secure", "wait_port"]


def secure(root: Path) -> LinkSecurity:
    """The tests' link security: on, with the PKI folder of this test."""
    return LinkSecurity(pki_dir=root / "pki")


def private_broker(workdir: Path, *, persistent: bool = False) -> Broker:
    """A TLS broker for one test (users: cam-1, cam-2, plc, mes); a missing Mosquitto fails
    in CI and skips elsewhere."""
    if not Path(MOSQUITTO).exists():
        if IN_CI:
            pytest.fail("mosquitto is not installed in CI: scripts/services.sh installs it")
        pytest.skip("mosquitto not installed; run scripts/services.sh")
    return Broker(workdir, persistent=persistent, security=secure(workdir), stations=STATIONS)
