"""Replicated serving: several stations on one PostgreSQL, one blob folder, one registry.

Real parts only: two ``create_app`` stations (real OpenVINO Inspector) against the
PostgreSQL server that ``scripts/services.sh`` starts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest

from inspection.store.store import Store
from tests.conftest import _drop_postgres_database, _fresh_postgres_database

from .helpers import PRODUCT, V2, Bundles, Served, serve, serving_registry, station_config

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def pg_url() -> Iterator[str]:
    url, name = _fresh_postgres_database()
    yield url
    _drop_postgres_database(name)


@pytest.fixture
def replicas(tmp_path: Path, bundles: Bundles, pg_url: str) -> Iterator[list[Served]]:
    """Two stations sharing the database, blob folder and registry (as on an NFS mount)."""
    serving_registry(tmp_path / "registry", bundles)
    config = station_config(tmp_path, pg_url, registry_poll_seconds=0.2)
    with ExitStack() as stack:
        yield [stack.enter_context(serve(config)) for _ in range(2)]


def test_replicas_starting_together_migrate_once(pg_url: str, tmp_path: Path) -> None:
    """Without the migration lock, racing ``CREATE TABLE``s block each other forever."""
    barrier = threading.Barrier(4)
    counts: list[int] = []

    def start() -> None:
        barrier.wait()
        store = Store.migrated(pg_url, tmp_path / "blobs")
        try:
            counts.append(store.count_inspections())
        finally:
            store.engine.dispose()

    threads = [threading.Thread(target=start, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert counts == [0, 0, 0, 0], "replicas did not all start within 60 s"


def test_same_request_id_to_both_replicas_is_stored_once(
    replicas: list[Served], sample_images: dict[str, bytes]
) -> None:
    a, b = replicas
    names = ["good0", "defect0", "good1", "defect1"] * 3
    barrier = threading.Barrier(2)

    def send(replica: Served, i: int):
        barrier.wait()
        return replica.inspect(sample_images[names[i]], request_id=f"dup-{i}", part_id=str(i))

    acked: dict[str, str] = {}
    with ThreadPoolExecutor(2) as pool:
        for i in range(len(names)):
            first, second = pool.map(send, (a, b), (i, i))
            assert sorted([first.status_code, second.status_code]) == [200, 201]
            assert first.json()["id"] == second.json()["id"]
            acked[f"st-1/dup-{i}"] = first.json()["id"]

    store = a.station.store
    assert store.count_inspections() == len(names)
    for key, inspection_id in acked.items():
        row = b.station.store.find_by_request_id(key)
        assert row is not None and row.id == inspection_id
        for sha in filter(None, (row.image_sha, row.map_sha, row.mask_sha, row.overlay_sha)):
            assert b.station.store.blobs.path(sha).stat().st_size > 0


def test_a_promotion_reaches_every_replica(
    replicas: list[Served], bundles: Bundles, sample_images: dict[str, bytes]
) -> None:
    registry = replicas[0].registry
    registry.bundles.add_bundle(PRODUCT, bundles.v2, V2)
    registry.journal.promote(PRODUCT, V2, actor="tests", reason="replica propagation")
    promoted_at = time.monotonic()
    pending = set(range(len(replicas)))
    while pending and time.monotonic() - promoted_at < 10:
        for i in list(pending):
            health = replicas[i].ops("/healthz").json()
            if health["products"][PRODUCT]["bundle_id"] == V2:
                pending.discard(i)
        time.sleep(0.05)
    assert not pending, f"replicas {sorted(pending)} still serve the old bundle after 10 s"
    for replica in replicas:
        response = replica.inspect(sample_images["defect0"])
        assert response.status_code == 201
        assert response.json()["bundle_id"] == V2
