"""Monthly partitions of the central results table (PostgreSQL) and retention by dropping them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import inspect as sql_inspect

from inspection.store import partitions
from inspection.store.forward import Forwarder, central_entry
from inspection.store.models import Inspection, OutboxMessage, Review
from inspection.store.retention import RetentionConfig, prune
from inspection.store.rollups import HourlyRollup
from inspection.store.store import Store
from tests.conftest import _drop_postgres_database, _fresh_postgres_database, verified
from tests.store.test_retention import CONFIG, NOW, _add, _dangling_and_orphans


@pytest.fixture
def central(tmp_path: Path, postgres_template: str) -> Iterator[Store]:
    url, name = _fresh_postgres_database(postgres_template)
    store = Store.migrated(url, tmp_path / "central-blobs")
    yield store
    store.engine.dispose()
    _drop_postgres_database(name)


def _months(store: Store) -> dict[str, int]:
    """{partition: rows} of the results table."""
    with store.engine.begin() as connection:
        names = [p.name for p in partitions.partitions(connection)]
        return {n: connection.execute(sa.text(f"SELECT count(*) FROM {n}")).scalar() for n in names}


def test_the_keys_hold_the_month_on_postgresql_and_sqlite_is_unchanged(
    store_url: str, tmp_path: Path
) -> None:
    store = Store.migrated(store_url, tmp_path / "blobs")
    schema = sql_inspect(store.engine)
    keys = schema.get_pk_constraint("inspections")["constrained_columns"]
    unique = [u["column_names"] for u in schema.get_unique_constraints("inspections")]
    foreign = {t: schema.get_foreign_keys(t) for t in ("reviews", "outbox_messages")}
    with store.engine.connect() as connection:
        split = partitions.partitioned(connection)
    if store.engine.dialect.name == "sqlite":
        assert (split, keys, unique) == (False, ["id"], [["request_id"]])
        assert all(len(f) == 1 for f in foreign.values())
    else:
        assert (split, keys, unique) == (True, ["id", "created_at"], [["request_id", "created_at"]])
        assert foreign == {"reviews": [], "outbox_messages": []}  # none can point at (id) alone


@pytest.mark.postgres
def test_the_migration_makes_the_coming_months_and_a_default_that_a_month_later_empties(
    central: Store,
) -> None:
    now = datetime.now(timezone.utc)
    months = [partitions.month_of(now, k) for k in range(partitions.MONTHS_AHEAD + 1)]
    names = [f"inspections_p{m:%Y%m}" for m in months] + [partitions.DEFAULT]
    assert list(_months(central)) == names
    old = NOW - timedelta(days=400)  # no month for it: the default partition takes it
    _add(central, "old", 400)
    assert _months(central)[partitions.DEFAULT] == 1
    with central.engine.begin() as connection:
        made = partitions.ensure(connection, now, since=old)
    assert made[0] == f"inspections_p{old:%Y%m}"
    counts = _months(central)
    assert (counts[made[0]], counts[partitions.DEFAULT]) == (1, 0)
    assert central.get_inspection("old").created_at == old


@pytest.mark.postgres
def test_a_result_sent_again_is_stored_once_on_the_partitioned_table(
    central: Store, tmp_path: Path
) -> None:
    local = Store.migrated(f"sqlite:///{tmp_path / 'local.db'}", tmp_path / "blobs")
    for i, days in enumerate((1, 40, 70)):  # three months
        key = f"line-1/r{i}"
        _add(local, key, days, request_id=key, outbox=[central_entry(key, 1)])
    forwarder = Forwarder(local, verified(central.url), central.blobs.root)
    assert forwarder.drain() == 3
    with local.session() as session:  # a crash before the local marks: all sent again
        session.execute(sa.update(OutboxMessage).values(delivered_at=None))
    assert forwarder.drain() == 3
    forwarder.stop()
    again = central.add_inspection(**_fields(local, "line-1/r1"))  # a direct writer's retry
    assert again.id == "line-1/r1"
    with central.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Inspection)) == 3
        assert session.scalar(sa.select(sa.func.sum(HourlyRollup.total))) == 3
    assert sum(_months(central).values()) == 3


def _fields(store: Store, row_id: str) -> dict:
    """A new write of ``row_id``'s result: same request id, a new id and time."""
    row = store.get_inspection(row_id)
    values = {c.key: getattr(row, c.key) for c in Inspection.__table__.columns}
    return values | {"id": "retry", "created_at": datetime.now(timezone.utc)}


@pytest.mark.postgres
@pytest.mark.parametrize("grass_row_days", [60, 400])
def test_retention_drops_the_months_past_every_products_rows(
    central: Store, grass_row_days: int
) -> None:
    """NOW is 2026-06-01 12:00 and rows are kept 60 days: February and March go whole; rows
    of April before the cutoff (2026-04-02 12:00) one by one. While grass keeps its rows 400
    days no month goes whole: the same brick rows go one by one."""
    with central.engine.begin() as connection:
        partitions.ensure(connection, NOW, since=datetime(2026, 2, 1, tzinfo=timezone.utc))
    kept = _add(central, "kept", 2)
    shared = central.get_inspection("kept").image_sha
    _add(central, "feb-shared", 110, image_sha=shared)  # its image is also a kept row's
    reviewed = _add(central, "feb-reviewed", 105, verdict="NG")
    central.add_review(reviewed.id, label="defect", reviewer="ann")
    _add(central, "mar", 70)
    _add(central, "apr-expired", 60.5)
    _add(central, "apr-kept", 59.5)
    _add(central, "grass", 20, product="grass")
    config = RetentionConfig(
        default=CONFIG.default,
        products={"grass": {"row_days": grass_row_days}},
        pause_seconds=0.0,
        grace_minutes=0.0,
    )
    report = prune(central, config, now=NOW)
    months = _months(central)
    with central.session() as session:
        left = set(session.scalars(sa.select(Inspection.id)))
        reviews = session.scalar(sa.select(sa.func.count()).select_from(Review))
    dropped = 2 if grass_row_days == 60 else 0
    assert (report.partitions_dropped, report.rows_deleted) == (dropped, 4)
    assert len({"inspections_p202602", "inspections_p202603"} & set(months)) == 2 - dropped
    assert left == {kept.id, "apr-kept", "grass"} and reviews == 0
    assert central.blobs.exists(shared)
    assert _dangling_and_orphans(central) == ([], [])


def _stamped(central: Store, name: str, at: datetime, **fields: object) -> Inspection:
    """A row the station stamped ``at``, received now (the central store's own clock)."""
    image = central.blobs.put(f"image {name}".encode(), ".png")
    values = {"id": name, "created_at": at, "product": "brick", "station_id": "st-1"}
    values |= {"score": 0.1, "threshold": 0.5, "verdict": "OK", "model_version": "v1"}
    values |= {"bundle_id": "v1", "latency_ms": 5.0, "width": 8, "height": 8, "image_sha": image}
    return central.add_inspection(**(values | fields))


@pytest.mark.postgres
def test_a_station_clock_a_year_off_is_flagged_kept_and_counted_by_the_central_prune(
    central: Store,
) -> None:
    now, year = datetime.now(timezone.utc), timedelta(days=365)
    with central.engine.begin() as connection:  # the year-old month exists: it may be dropped
        partitions.ensure(connection, now, since=now - year)
    for name, at in (("back", now - year), ("ahead", now + year), ("right", now)):
        _stamped(central, name, at, received_at=now - year)  # a station cannot set it
    _add(central, "old", 0, created_at=now - year)  # received a year ago: it goes
    config = RetentionConfig(default=CONFIG.default, pause_seconds=0.0, grace_minutes=0.0)
    report = prune(central, config, now=now)
    with central.session() as session:
        kept = {row.id: row for row in session.scalars(sa.select(Inspection))}
    assert set(kept) == {"back", "ahead", "right"} and report.rows_deleted == 1
    assert {name: row.clock_skewed for name, row in kept.items()} == {
        "back": True, "ahead": True, "right": False
    }  # fmt: skip
    assert all(abs((row.received_at - now).total_seconds()) < 60 for row in kept.values())
    assert kept["back"].created_at == now - year  # what the station said
    assert report.clock_skewed == 2 and "2 rows with a skewed station clock" in report.summary()
    assert f"inspections_p{now - year:%Y%m}" in _months(central)  # its month held back


@pytest.mark.postgres
def test_months_of_neglect_are_made_while_writers_insert_and_one_bad_month_stops_no_other(
    central: Store,
) -> None:
    now = datetime.now(timezone.utc)
    later = partitions.month_of(now, 6)  # six months without a prune
    stray = f"inspections_p{partitions.month_of(later, -2):%Y%m}"
    with central.engine.begin() as connection:  # a table in the way of one month
        connection.execute(sa.text(f"CREATE TABLE {stray} (id text)"))
    months = [partitions.month_of(now, k) for k in range(10)]
    errors: list[Exception] = []
    stop = threading.Event()

    def write(worker: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                month = months[i % len(months)]
                _stamped(central, f"w{worker}-{i}", month + timedelta(hours=worker + 1))
            except Exception as exc:
                errors.append(exc)
            i += 1

    writers = [threading.Thread(target=write, args=(w,)) for w in range(2)]
    for thread in writers:
        thread.start()
    try:
        made, failed = partitions.upkeep(central.engine, later)
        report = prune(central, RetentionConfig(pause_seconds=0.0), now=later)
    finally:
        stop.set()
        for thread in writers:
            thread.join()
    assert errors == [] and failed == [stray] and report.partitions_failed == 1
    expected = {f"inspections_p{m:%Y%m}" for m in months} - {stray}
    assert expected <= set(_months(central)) and set(made) | set(_months(central)) >= expected
    with central.engine.begin() as connection:
        astray = connection.execute(
            sa.text(f"SELECT count(*) FROM {partitions.DEFAULT} WHERE to_char(created_at, "
                    f"'YYYYMM') <> '{stray[-6:]}'")
        ).scalar()  # fmt: skip
    assert astray == 0  # every row of a made month is in it, none left in the default
