"""Real servers for the line tests: a private Mosquitto per test (``inspection.line.mosquitto``),
skipped outside CI when Mosquitto is not installed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from inspection.line.mosquitto import MOSQUITTO, Broker, Collector, free_port, wait_port

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
__all__ = ["Broker", "Collector", "free_port", "private_broker", "wait_port"]


def private_broker(workdir: Path, *, persistent: bool = False) -> Broker:
    """A broker for one test; a missing Mosquitto fails in CI and skips elsewhere."""
    if not Path(MOSQUITTO).exists():
        if IN_CI:
            pytest.fail("mosquitto is not installed in CI: scripts/services.sh installs it")
        pytest.skip("mosquitto not installed; run scripts/services.sh")
    return Broker(workdir, persistent=persistent)
