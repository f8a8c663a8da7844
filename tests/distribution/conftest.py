"""A real central catalog: ``create_catalog_app`` under uvicorn on a free localhost port."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from bench._shared import copy_bundle
from inspection.core.registry import Registry
from inspection.distribution.server import create_catalog_app
from inspection.store.store import Store
from inspection.store.tokens import create_token
from tests.line.helpers import free_port
from tests.service.helpers import PRODUCT, V1, V2


@dataclass
class Central:
    """The central registry, its token store and the running catalog server."""

    registry: Registry
    store: Store
    token: str
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def v2_bundle(fp32_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_bundle(fp32_bundle, tmp_path_factory.mktemp("distribution") / V2, V2)


@pytest.fixture(scope="session")
def sample_png(tiny_product: Path) -> bytes:
    return sorted((tiny_product / "test" / "good").glob("*.png"))[0].read_bytes()


@pytest.fixture
def central(tmp_path: Path, fp32_bundle: Path) -> Iterator[Central]:
    registry = Registry(tmp_path / "central" / "registry")
    registry.bundles.add_bundle(PRODUCT, fp32_bundle, V1)
    registry.journal.promote(PRODUCT, V1, actor="tests", reason="initial")
    store = Store.migrated(
        f"sqlite:///{tmp_path / 'central' / 'site.db'}", tmp_path / "central" / "blobs"
    )
    token, _ = create_token(store, "line-1", "tests")
    port = free_port()
    config = uvicorn.Config(
        create_catalog_app(registry.root, store), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "the catalog server did not start within 20 s"
    running = Central(registry, store, token, f"http://127.0.0.1:{port}", server, thread)
    yield running
    running.stop()
    store.engine.dispose()
