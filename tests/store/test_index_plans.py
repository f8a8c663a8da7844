"""The review queue's count, page jump and the Thresholds page's reviewed scores are answered
from index pages alone (migration 0008), on SQLite and PostgreSQL: checked with EXPLAIN. On
PostgreSQL autovacuum keeps the visibility map current by changed rows (migration 0009)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import event

from inspection.store import queries
from inspection.store.models import OutboxEntry
from inspection.store.outbox import Outbox
from inspection.store.store import Store
from tests.conftest import FilledStores

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=timezone.utc)


def _fill(store: Store) -> None:
    for i in range(60):
        score = (i * 37 % 100) / 100
        row = store.add_inspection(
            created_at=T0 + timedelta(minutes=i),
            product="p",
            station_id=f"s{i % 2}",
            score=score,
            threshold=0.5,
            verdict="NG" if score >= 0.5 else "OK",
            model_version="p/v0001",
            bundle_id="b",
            latency_ms=10.0,
            width=8,
            height=8,
            image_sha=f"{i:064d}",
            audit_sample=i % 5 == 0,
        )
        if i % 4 == 0:
            store.add_review(row.id, label="good" if score < 0.5 else "defect", reviewer="ann")


@pytest.fixture
def filled(store_url: str, tmp_path: Path, filled_stores: FilledStores) -> Store:
    """A copy of the store ``_fill`` filled (once per backend and session)."""
    store = filled_stores.store(_fill, store_url, tmp_path / "blobs")
    yield store
    store.engine.dispose()


def _plans(store: Store, call: Callable[[], object], table: str = "inspections") -> list[str]:
    """The plan of each statement on ``table`` that ``call`` runs (PostgreSQL's with
    sequential and bitmap scans off: which index can answer, not which is cheapest at 60 rows;
    a monthly partition's index named as the results table's index it is part of)."""
    captured: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:
        if f"FROM {table}" in statement:
            captured.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        call()
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    sqlite = store.engine.dialect.name == "sqlite"
    if not sqlite:  # statistics and visibility map, as autovacuum keeps them on a live store
        options = {"isolation_level": "AUTOCOMMIT"}
        with store.engine.connect().execution_options(**options) as connection:
            connection.exec_driver_sql(f"VACUUM ANALYZE {table}")
    plans = []
    with store.engine.connect() as connection:
        cursor = connection.connection.dbapi_connection.cursor()
        parents = {}
        if not sqlite:
            cursor.execute("SET enable_seqscan = off; SET enable_bitmapscan = off")
            cursor.execute(
                "SELECT c.relname, p.relname FROM pg_inherits i JOIN pg_class c ON "
                "c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent WHERE c.relkind = 'i'"
            )
            parents = dict(cursor.fetchall())
        for statement, parameters in captured:
            cursor.execute(
                ("EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ") + statement, parameters
            )
            plan = " / ".join(str(row[-1] if sqlite else row[0]) for row in cursor)
            plans.append(re.sub(r"\w+_idx\b", lambda m: parents.get(m[0], m[0]), plan))
        cursor.close()
    return plans


def _index_only(store: Store, index: str) -> str:
    if store.engine.dialect.name == "sqlite":
        return f"COVERING INDEX {index}"
    return f"Index Only Scan Backward using {index}"


@pytest.mark.parametrize(
    "query",
    [
        queries.QueueQuery(),
        queries.QueueQuery(product="p", station_id="s1", kind="ng", margin=0.2),
    ],
)
def test_queue_count_and_page_jump_read_the_index_only(filled: Store, query) -> None:
    jump = _plans(filled, lambda: queries.queue_anchor(filled, query, 3))
    assert len(jump) == 1 and _index_only(filled, "ix_inspections_queue") in jump[0], jump
    count = _plans(filled, lambda: queries.count_review_queue(filled, query))
    assert len(count) == 1 and "ix_inspections_queue" in count[0], count
    assert "Index Only Scan" in count[0] or "COVERING INDEX" in count[0], count


def test_a_queue_page_walks_the_queue_index(filled: Store) -> None:
    after = queries.queue_anchor(filled, queries.QueueQuery(), 2)
    page = _plans(filled, lambda: queries.review_queue(filled, queries.QueueQuery(), after=after))
    assert len(page) == 1 and "ix_inspections_queue" in page[0], page
    assert "TEMP B-TREE" not in page[0] and "Sort  (" not in page[0], page  # no sort of the rows


@pytest.mark.parametrize("audit_only", [False, True])
def test_reviewed_scores_read_the_partial_index_only(filled: Store, audit_only: bool) -> None:
    plans = _plans(filled, lambda: queries.labelled_scores(filled, "p", audit_only=audit_only))
    index = "ix_inspections_reviewed"
    expected = (
        f"COVERING INDEX {index}" if "sqlite" in filled.url else f"Index Only Scan using {index}"
    )
    assert len(plans) == 1 and expected in plans[0], plans


def test_a_stored_payload_is_found_through_its_result(filled: Store) -> None:
    """What the OPC 40100 server serves as a result's content (``Outbox.payload``) is one probe
    of its messages (migration 0015), not a read of every message to the sink."""
    ids = []
    for i in range(20):
        key = f"r{i}"
        outbox = [OutboxEntry("signed", key, f"payload {i}", delivered=True),
                  OutboxEntry("mes", key, f"payload {i}")]  # fmt: skip
        row = filled.add_inspection(
            request_id=f"s0/{key}", product="p", station_id="s0", score=0.1, threshold=0.5,
            verdict="OK", model_version="p/v0001", bundle_id="b", latency_ms=10.0, width=8,
            height=8, image_sha=f"{i:064d}", outbox=outbox,
        )  # fmt: skip
        ids.append(row.id)
    outbox = Outbox(filled)
    plans = _plans(filled, lambda: outbox.payload(ids[7], "signed"), table="outbox_messages")
    assert len(plans) == 1 and "ix_outbox_inspection" in plans[0], plans
    assert outbox.payload(ids[7], "signed") == "payload 7"


def test_the_anchor_lands_where_paging_does(filled: Store) -> None:
    query = queries.QueueQuery(kind="all", status="all", order="closest_to_threshold")
    rows = queries.review_queue(filled, query, limit=100)
    for position in (0, 7, len(rows) - 2):
        anchor = queries.queue_anchor(filled, query, position)
        assert anchor == queries.cursor_after(rows[position], query.order)
        assert queries.review_queue(filled, query, limit=1, after=anchor)[0] == rows[position + 1]
    assert queries.queue_anchor(filled, query, len(rows) - 1) is None  # nothing follows


@pytest.mark.postgres
@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)  # autovacuum is PostgreSQL's
def test_postgres_vacuums_the_results_by_changed_rows(store_url: str, tmp_path: Path) -> None:
    store = Store.migrated(store_url, tmp_path / "blobs")
    with store.engine.connect() as connection:  # each monthly partition's (migration 0011)
        months = connection.exec_driver_sql(
            "SELECT reloptions FROM pg_class c JOIN pg_inherits i ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'inspections'::regclass"
        ).scalars()
        months = list(months)
    store.engine.dispose()
    assert len(months) == 5
    for options in months:
        assert "autovacuum_vacuum_scale_factor=0" in options, options
        assert "autovacuum_vacuum_threshold=2000" in options, options
