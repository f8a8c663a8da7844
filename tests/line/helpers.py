"""Real servers for the line tests: a private Mosquitto per test (``inspection.line.mosquitto``),
skipped outside CI when Mosquitto is not installed. Security is on, as in production: the test's
PKI folder is ``<tmp>/pki`` (made on first use), shared by the broker, PLC and station."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from inspection.core.registry import Registry
from inspection.line.camera import Camera, Frame
from inspection.line.config import LineConfig, LinkSecurity
from inspection.line.mosquitto import MOSQUITTO, Broker, Collector, free_port, wait_port

if TYPE_CHECKING:
    from inspection.line.station import LineStation

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
STATIONS = ("cam-1", "cam-2")
__all__ = [
    "Broker",
    "Collector",
    "free_port",
    "need_mosquitto",
    "private_broker",
    "publish_until_killed",
    "secure",
    "serve_until_killed",
    "slow_first_capture",
    "two_live_products",
    "wait_port",
]


def secure(root: Path) -> LinkSecurity:
    """The tests' link security: on, with the PKI folder of this test."""
    return LinkSecurity(pki_dir=root / "pki")


def need_mosquitto() -> None:
    """Fail in CI, skip elsewhere, without the Mosquitto binary (scripts/services.sh)."""
    if not Path(MOSQUITTO).exists():
        if IN_CI:
            pytest.fail("mosquitto is not installed in CI: scripts/services.sh installs it")
        pytest.skip("mosquitto not installed; run scripts/services.sh")


def private_broker(workdir: Path, *, persistent: bool = False) -> Broker:
    """A TLS broker for one test (users: cam-1, cam-2, plc, mes); a missing Mosquitto fails
    in CI and skips elsewhere."""
    need_mosquitto()
    return Broker(workdir, persistent=persistent, security=secure(workdir), stations=STATIONS)


def two_live_products(root: Path, fp32_bundle: Path) -> None:
    """Make ``grass`` live beside ``brick`` (call after ``line_config``), both the same model:
    brick at threshold 0.3 (a defect, ~0.7, is NG), grass at 0.999 (every part OK), so a verdict
    shows which product judged it."""
    registry = Registry(root / "registry")
    grass = shutil.copytree(fp32_bundle, root / "grass-bundle")
    metadata = json.loads((grass / "metadata.json").read_text())
    (grass / "metadata.json").write_text(json.dumps(metadata | {"product": "grass"}))
    registry.bundles.add_bundle("grass", grass, "v0001-fp32")
    registry.journal.promote("grass", "v0001-fp32", actor="tests", reason="a second live product")
    for product, value in (("brick", 0.3), ("grass", 0.999)):
        registry.journal.set_threshold(
            product, value, actor="tests", reason="verdict by product", sign=False
        )


def serve_until_killed(config: LineConfig) -> None:
    """A line station process (``multiprocessing`` spawn target): serve until killed."""
    from inspection.line.station import LineStation

    station = LineStation.build(config)
    station.start()
    while True:
        time.sleep(3600)


def publish_until_killed(store_url: str, blob_dir: Path, port: int, security: LinkSecurity) -> None:
    """A station's outbox publisher to ``port``'s broker as ``cam-1`` (``multiprocessing`` spawn
    target): a delivery gives up after 0.5 s and is retried 3 s later; runs until killed."""
    from inspection.line.config import PublisherConfig
    from inspection.line.publisher import Publisher
    from inspection.line.sinks import MqttSink
    from inspection.store.outbox import Outbox
    from inspection.store.store import Store

    sink = MqttSink("mqtt", "127.0.0.1", port, "inspection/cam-1/result", security=security,
                    user="cam-1", timeout_s=0.5)  # fmt: skip
    retry = PublisherConfig(poll_s=0.05, backoff_initial_s=3.0, backoff_max_s=3.0)
    Publisher(Outbox(Store(store_url, blob_dir)), {"mqtt": sink}, retry).start()
    while True:
        time.sleep(3600)


class SlowFirstCamera:
    """A station's real camera whose next ``slow`` captures each wait ``hold_s`` first (a
    camera that is late for a part), so the station answers ``TIMEOUT`` and the PLC retries."""

    def __init__(self, camera: Camera, *, hold_s: float, slow: int = 1) -> None:
        self.camera, self.hold_s, self.slow = camera, hold_s, slow

    def capture(self) -> Frame:
        if self.slow > 0:
            self.slow -= 1
            time.sleep(self.hold_s)
        return self.camera.capture()

    def close(self) -> None:
        self.camera.close()


def slow_first_capture(station: LineStation, hold_s: float) -> SlowFirstCamera:
    """Make the built (not yet started) ``station``'s next capture late by ``hold_s``; the
    camera returned (``slow += 1`` makes the next one late again)."""
    [view] = station.handler.views
    camera = SlowFirstCamera(view.camera, hold_s=hold_s)
    station.handler.views = (dataclasses.replace(view, camera=camera),)
    return camera
