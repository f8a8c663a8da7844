"""The soak's bulk pre-fill (bench/soak.py) leaves a store as the Store API would: every index
back, rollups that count the rows, rows evenly spread and already pruned of their blobs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Integer, cast, func, inspect, select

from inspection.store.models import Inspection
from inspection.store.rollups import HourlyRollup, ScoreRollup
from inspection.store.store import Store
from tests.bench import bench_module


@pytest.fixture(scope="module")
def soak():
    return bench_module("soak")


def test_bulk_load_restores_indexes_and_fills_rollups(soak, store_url: str, tmp_path: Path):
    store = Store.migrated(store_url, tmp_path / "blobs")
    indexes_before = {i["name"] for i in inspect(store.engine).get_indexes("inspections")}
    newest = datetime(2026, 1, 2, tzinfo=timezone.utc)
    oldest = newest - timedelta(hours=5)
    soak.bulk_load(store, 3000, oldest, newest)

    store.engine.dispose()  # a fresh inspector: SQLAlchemy caches reflection per engine
    assert {i["name"] for i in inspect(store.engine).get_indexes("inspections")} == indexes_before
    with store.session() as session:
        rows, ng, first, last, pruned, audits = session.execute(
            select(
                func.count(),
                func.sum(cast(Inspection.verdict == "NG", Integer)),
                func.min(Inspection.created_at),
                func.max(Inspection.created_at),
                func.count(Inspection.blobs_pruned_at),
                func.sum(cast(Inspection.audit_sample, Integer)),
            )
        ).one()
        totals = session.execute(select(func.sum(HourlyRollup.total), func.sum(HourlyRollup.ng)))
        binned = session.scalar(select(func.sum(ScoreRollup.count)))
        hours = session.scalar(select(func.count()).select_from(HourlyRollup))
    assert (rows, pruned, audits) == (3000, 3000, 6)
    assert tuple(totals.one()) == (3000, ng) and binned == 3000
    assert 0 < ng < 3000 * 0.05
    assert hours == 4 * 5  # 4 stations over 5 hours
    naive = lambda moment: moment.replace(tzinfo=None)  # noqa: E731 - SQLite returns naive
    assert naive(first) == naive(oldest)
    assert naive(last) == naive(newest - (newest - oldest) / 3000)
    store.engine.dispose()
