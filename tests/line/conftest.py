"""Line fixtures: a private Mosquitto broker and a collector on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import Broker, private_broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    running = private_broker(tmp_path, persistent=True)
    running.start()
    yield running
    running.kill()
