"""Acknowledged results are durable and stored exactly once, on SQLite and PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from inspection.store.store import Store

from .helpers import Bundles, serve, serving_registry, station_config

pytestmark = pytest.mark.slow


def test_acknowledged_results_are_stored_once(
    store_url: str, tmp_path: Path, bundles: Bundles, sample_images: dict[str, bytes]
) -> None:
    serving_registry(tmp_path / "registry", bundles)
    with serve(station_config(tmp_path, store_url)) as served:
        names = ["good0", "good1", "defect0", "defect1"]
        acked = {}
        for i, name in enumerate(names):
            response = served.inspect(sample_images[name], request_id=f"r{i}", part_id=name)
            assert response.status_code == 201
            acked[f"r{i}"] = response.json()["id"]
        # client retries of every request, and four racing copies of a new one
        for i, name in enumerate(names):
            retry = served.inspect(sample_images[name], request_id=f"r{i}", part_id=name)
            assert retry.status_code == 200 and retry.json()["id"] == acked[f"r{i}"]
        with ThreadPoolExecutor(4) as pool:
            racing = list(
                pool.map(
                    lambda _: served.inspect(sample_images["good0"], request_id="race"), range(4)
                )
            )
        assert {r.status_code for r in racing} <= {200, 201}
        assert len({r.json()["id"] for r in racing}) == 1
        acked["race"] = racing[0].json()["id"]

    reopened = Store(store_url, tmp_path / "blobs")  # a new process's view
    try:
        assert reopened.count_inspections() == len(acked)
        for request_id, inspection_id in acked.items():
            row = reopened.get_inspection(inspection_id)
            assert row.request_id == f"st-1/{request_id}"
            for sha in filter(None, (row.image_sha, row.map_sha, row.mask_sha, row.overlay_sha)):
                assert reopened.blobs.path(sha).stat().st_size > 0
    finally:
        reopened.engine.dispose()
