"""Rollups written with each result equal a rebuild from the results table; the queries that
read them agree with the rows; station blob checks and the queue on both backends."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import delete, select

from inspection.store import queries, rollups
from inspection.store.rollups import HourlyRollup, ScoreRollup
from inspection.store.store import Store
from tests.conftest import FilledStores

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=timezone.utc)


def _add(store: Store, rng: np.random.Generator, minutes: float, station: str, version: str):
    score = float(rng.random())
    return store.add_inspection(
        created_at=T0 + timedelta(minutes=minutes),
        product="p" if station != "s3" else "q",
        station_id=station,
        score=score,
        threshold=0.6 if station == "s2" else 0.5,
        verdict="NG" if score >= (0.6 if station == "s2" else 0.5) else "OK",
        model_version=version,
        bundle_id="b",
        latency_ms=float(rng.gamma(4.0, 5.0)),
        width=8,
        height=8,
        image_sha=f"{int(minutes):064d}",
    )


def _fill(store: Store) -> None:
    rng = np.random.default_rng(7)
    for i in range(240):  # 3 stations over ~8 hours; the model changes at 4 h
        _add(store, rng, i * 2.1, ("s1", "s2", "s3")[i % 3], "v1" if i < 120 else "v2")
    _add(store, rng, 0.5, "s1", "v0")  # a late arrival for an old hour


@pytest.fixture
def filled(store_url: str, tmp_path: Path, filled_stores: FilledStores) -> Store:
    """A copy of the store ``_fill`` filled (once per backend and session)."""
    store = filled_stores.store(_fill, store_url, tmp_path / "blobs")
    yield store
    store.engine.dispose()


def _snapshot(store: Store) -> tuple[list, list]:
    with store.session() as session:
        hourly = session.execute(select(HourlyRollup).order_by(*HourlyRollup.__table__.c)).all()
        scores = session.execute(select(ScoreRollup).order_by(*ScoreRollup.__table__.c)).all()
    columns = [c.name for c in HourlyRollup.__table__.columns if c.name != "model_version"]
    pick = lambda r: tuple(  # noqa: E731
        round(v, 6) if isinstance(v, float) else queries.as_utc(v) if isinstance(v, datetime) else v
        for v in (getattr(r[0], c) for c in columns)
    )
    return [pick(r) for r in hourly], [
        (queries.as_utc(r[0].hour), r[0].product, r[0].bin, r[0].count) for r in scores
    ]


def test_written_rollups_equal_a_rebuild(filled: Store) -> None:
    written = _snapshot(filled)
    with filled.session() as session:
        assert (
            session.scalar(
                select(HourlyRollup.model_version).where(
                    HourlyRollup.station_id == "s1", HourlyRollup.hour == T0
                )
            )
            == "v1"
        )  # the newest inspection's model, not the late arrival's
        rollups.rebuild(session)
    assert _snapshot(filled) == written
    assert sum(row[3] for row in written[0]) == 241


def test_queries_agree_with_the_rows(filled: Store) -> None:
    with filled.session() as session:
        rows = session.execute(
            select(rollups.Inspection.score, rollups.Inspection.station_id)
        ).all()
    p_scores = np.array([s for s, station in rows if station != "s3"])
    expected = np.histogram(np.clip(p_scores, 0, 0.999999), bins=10, range=(0, 1))[0]
    assert queries.score_histogram(filled, "p", bins=10).tolist() == expected.tolist()
    health = {r.station_id: r for r in queries.station_health(filled)}
    assert health["s1"].total == 81 and health["s1"].model_version == "v2"
    days = queries.volume_over_time(filled, period="day", product="p")
    assert sum(r.total for r in days) == len(p_scores)
    assert queries.daily_volume(filled, "q", since=T0, until=T0 + timedelta(days=1)) == 80


def test_histogram_leaves_out_reviewed_defects(filled: Store) -> None:
    top = queries.review_queue(filled, queries.QueueQuery(product="p", kind="ng"), limit=3)
    for row in top:
        filled.add_review(row.id, label="defect", reviewer="ann")
    everything = queries.score_histogram(filled, "p")
    without = queries.score_histogram(filled, "p", exclude_labels=("defect",))
    assert everything.sum() - without.sum() == 3
    for row in top:
        assert everything[rollups.bin_of(row.score)] > without[rollups.bin_of(row.score)]


def test_station_blob_check(filled: Store) -> None:
    sha = f"{0:064d}"
    assert filled.station_has_blob("s1", sha)
    assert not filled.station_has_blob("s2", sha)
    assert not filled.station_has_blob("s1", "f" * 64)


def test_rollups_recorded_in_batches_equal_those_recorded_one_by_one(filled: Store) -> None:
    """The forwarder records a batch at once (``store.forward``), its rows in any order."""
    written = _snapshot(filled)
    rows = sorted(filled.list_inspections(limit=1000), key=lambda row: row.id)
    with filled.session() as session:
        session.execute(delete(HourlyRollup))
        session.execute(delete(ScoreRollup))
        for start in range(0, len(rows), 50):
            rollups.record(session, rows[start : start + 50])
        newest = select(HourlyRollup.model_version).where(
            HourlyRollup.station_id == "s1", HourlyRollup.hour == T0
        )
        assert session.scalar(newest) == "v1"
    assert _snapshot(filled) == written
