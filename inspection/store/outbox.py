"""The transactional outbox: results wait here, in the results database, until each sink has them.

An inspection and its outbox rows are committed in one transaction (``Store.add_inspection``),
so a result that was stored is never lost on its way out, even across a crash. A publisher
(``inspection.line.publisher``) reads due rows, delivers them and marks them delivered; a
crash between delivery and marking means a redelivery, identifiable by ``key`` (at least once).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Protocol

from sqlalchemy import ColumnElement, func, select, update

from inspection.store.models import OutboxMessage, as_utc
from inspection.store.store import Store, StoreError


@dataclass(frozen=True)
class PendingMessage:
    """A message not yet acknowledged by its sink."""

    id: int
    sink: str
    key: str
    payload: str
    attempts: int
    created_at: datetime


@dataclass(frozen=True)
class SinkBacklog:
    """Per sink: messages waiting, the age of the oldest one, and messages delivered."""

    pending: int
    oldest_age_s: float | None
    delivered: int


class Backoff(Protocol):
    """Retry delays: doubling from ``backoff_initial_s`` up to ``backoff_max_s``."""

    @property
    def backoff_initial_s(self) -> float: ...
    @property
    def backoff_max_s(self) -> float: ...


def backoff_s(failures: int, policy: Backoff) -> float:
    """Delay before retry ``failures`` (>= 1): doubling, capped, with up to 20 % jitter so many
    stations do not retry in lockstep (after a central restart, say)."""
    base = min(policy.backoff_max_s, policy.backoff_initial_s * 2 ** max(0, failures - 1))
    return base * (1.0 + 0.2 * random.random())


class Outbox:
    """Read and settle outbox rows of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def due(
        self, sinks: list[str], *, limit: int = 50, now: datetime | None = None
    ) -> list[PendingMessage]:
        """Undelivered messages of ``sinks`` whose retry time has come, oldest first."""
        if not sinks:
            return []
        now = now or datetime.now(timezone.utc)
        query = (
            select(OutboxMessage)
            .where(
                OutboxMessage.sink.in_(sinks),
                OutboxMessage.delivered_at.is_(None),
                OutboxMessage.next_attempt_at <= now,
            )
            .order_by(OutboxMessage.id)
            .limit(limit)
        )
        with self.store.session() as session:
            return [
                PendingMessage(
                    row.id, row.sink, row.key, row.payload, row.attempts, as_utc(row.created_at)
                )
                for row in session.scalars(query)
            ]

    def payload(self, inspection_id: str, sink: str) -> str:
        """The payload of ``inspection_id``'s message to ``sink``, as written: one probe of
        ``ix_outbox_inspection`` (``StoreError``: none)."""
        query = select(OutboxMessage.payload).where(
            OutboxMessage.inspection_id == inspection_id, OutboxMessage.sink == sink
        )
        with self.store.session() as session:
            payload = session.scalar(query)
        if payload is None:
            raise StoreError(f"inspection {inspection_id!r} has no outbox message for {sink!r}")
        return payload

    def delivered(self, message_id: int, at: datetime | None = None) -> None:
        """Mark the message delivered, unless its sink's acknowledgement already did
        (``acknowledged``)."""
        self._attempted(
            OutboxMessage.id == message_id,
            delivered_at=at or datetime.now(timezone.utc),
            last_error=None,
        )

    def acknowledged(self, sink: str, key: str) -> None:
        """Mark ``key``'s message to ``sink`` delivered as the sink's acknowledgement arrives,
        before its delivery returns (``MqttSink.on_acknowledged``): one probe of
        ``uq_outbox_key_sink``; nothing if it is marked already or not in this outbox."""
        self._attempted(
            OutboxMessage.sink == sink,
            OutboxMessage.key == key,
            delivered_at=datetime.now(timezone.utc),
            last_error=None,
        )

    def failed(self, message_id: int, error: str, retry_in_s: float) -> None:
        """Count a failed attempt and hold the message back for ``retry_in_s`` seconds."""
        retry_at = datetime.now(timezone.utc) + timedelta(seconds=retry_in_s)
        self._attempted(
            OutboxMessage.id == message_id, next_attempt_at=retry_at, last_error=error[:2000]
        )

    def _attempted(self, *where: ColumnElement[bool], **values: object) -> None:
        """Count one delivery attempt of the undelivered message ``where`` selects and set
        ``values`` on it; a message delivered already is left as it is."""
        count = OutboxMessage.attempts + 1
        update_ = update(OutboxMessage).where(*where, OutboxMessage.delivered_at.is_(None))
        with self.store.session() as session:
            session.execute(update_.values(attempts=count, **values))

    def backlog(self, now: datetime | None = None) -> dict[str, SinkBacklog]:
        """Per sink: pending count, oldest pending age and delivered count."""
        now = now or datetime.now(timezone.utc)
        waiting = OutboxMessage.delivered_at.is_(None)
        query = (
            select(
                OutboxMessage.sink,
                func.count().filter(waiting),
                func.min(OutboxMessage.created_at).filter(waiting),
                func.count().filter(~waiting),
            )
            .group_by(OutboxMessage.sink)
            .order_by(OutboxMessage.sink)
        )
        with self.store.session() as session:
            rows = session.execute(query).all()
        return {
            sink: SinkBacklog(
                int(n), None if at is None else (now - as_utc(at)).total_seconds(), int(d)
            )
            for sink, n, at, d in rows
        }
