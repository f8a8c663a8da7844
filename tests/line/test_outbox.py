from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from inspection.store.models import OutboxEntry, OutboxMessage
from inspection.store.outbox import Outbox
from inspection.store.store import Store

from .records import entries, inspection_fields


def test_outbox_rows_commit_with_their_inspection(store_url: str, tmp_path: Path) -> None:
    store = Store.migrated(store_url, tmp_path / "blobs")
    outbox = Outbox(store)
    fields = inspection_fields(1)
    first = store.add_inspection(outbox=entries(fields, ("mqtt", "hook")), **fields)
    due = outbox.due(["mqtt", "hook"])
    assert [(m.sink, m.key) for m in due] == [("mqtt", "req-00001"), ("hook", "req-00001")]

    # A replayed request id stores nothing new: neither a row nor a second outbox message.
    again = inspection_fields(1)
    assert store.add_inspection(outbox=entries(again, ("mqtt",)), **again).id == fields["id"]
    assert len(outbox.due(["mqtt"])) == 1

    # An inspection that fails to insert takes its outbox rows with it (one transaction).
    # A primary key clash (PostgreSQL's partitioned table keys on (id, created_at): migration 0011).
    bad = inspection_fields(2, id=first.id, created_at=first.created_at)
    with pytest.raises(IntegrityError):
        store.add_inspection(outbox=entries(bad, ("mqtt",)), **bad)
    assert [m.key for m in outbox.due(["mqtt"])] == ["req-00001"]
    store.engine.dispose()


def test_failed_messages_wait_and_delivered_ones_leave_the_backlog(
    store_url: str, tmp_path: Path
) -> None:
    store = Store.migrated(store_url, tmp_path / "blobs")
    outbox = Outbox(store)
    for n in range(3):
        fields = inspection_fields(n)
        store.add_inspection(outbox=entries(fields, ("mqtt",)), **fields)
    first, second, third = outbox.due(["mqtt"])
    outbox.failed(first.id, "broker down", retry_in_s=60)
    outbox.delivered(second.id)
    assert [m.id for m in outbox.due(["mqtt"])] == [third.id]
    backlog = outbox.backlog()["mqtt"]
    assert (backlog.pending, backlog.delivered) == (2, 1)
    assert backlog.oldest_age_s is not None and backlog.oldest_age_s >= 0
    assert outbox.due(["other"]) == [] and outbox.due([]) == []
    store.engine.dispose()


def test_outbox_survives_reopening_the_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'line.db'}"
    store = Store.migrated(url, tmp_path / "blobs")
    fields = inspection_fields(1)
    store.add_inspection(outbox=[OutboxEntry("mqtt", "req-00001", "{}")], **fields)
    store.engine.dispose()
    reopened = Outbox(Store(url, tmp_path / "blobs"))
    assert [m.key for m in reopened.due(["mqtt"])] == ["req-00001"]
    reopened.store.engine.dispose()


def test_a_message_marked_at_its_acknowledgement_is_settled_once(
    store_url: str, tmp_path: Path
) -> None:
    """``acknowledged`` (the sink's PUBACK, by sink and key) marks the message; the delivery's
    own return or a late failure after it count no second attempt and reschedule nothing."""
    store = Store.migrated(store_url, tmp_path / "blobs")
    outbox = Outbox(store)
    for n in range(2):
        fields = inspection_fields(n)
        store.add_inspection(outbox=entries(fields, ("mqtt", "hook")), **fields)
    first = outbox.due(["mqtt"])[0]
    outbox.acknowledged("mqtt", first.key)
    outbox.delivered(first.id)
    outbox.failed(first.id, "timed out as the PUBACK came", retry_in_s=60)
    outbox.acknowledged("mqtt", "not-in-this-outbox")
    assert [m.key for m in outbox.due(["mqtt"])] == ["req-00001"]
    assert [m.key for m in outbox.due(["hook"])] == ["req-00000", "req-00001"]
    assert outbox.backlog()["mqtt"].delivered == 1
    with store.session() as session:
        attempts = session.scalar(
            select(OutboxMessage.attempts).where(OutboxMessage.id == first.id)
        )
    assert attempts == 1
    store.engine.dispose()
