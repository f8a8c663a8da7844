"""Store and forward: a station commits each result locally, answers, then forwards it centrally.

Each inspection carries an outbox message for the sink ``central`` (payload: its blobs' bytes),
committed with it. ``Forwarder`` sends the rows oldest first, a batch at a time: the blobs into
the content-addressed central folder, then the rows in one central transaction (``ON CONFLICT
(id, created_at) DO NOTHING``: a batch sent again after a crash inserts nothing), then the
messages marked delivered locally. A central side slower than ``timeout_s`` has its connections
cut; the batch is retried. Rows carry only the columns the central table has, so stations a
release apart share one store (a value in a column it lacks waits: ``CentralBehind``).

A row the central store refuses (a SQLSTATE outside ``_RETRIED``, a blob that does not hash to
its name) is quarantined alone while the rest flows (``release`` puts it back). Station reviews
follow their result through the idempotent central ``forward_review``; ``report`` upserts the
backlog into the central ``station_backlog`` for the dashboard.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import (
    BigInteger,
    Engine,
    Integer,
    cast,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, aliased

from inspection.core.background import Background
from inspection.store import rollups
from inspection.store.blobs import BlobMismatch, BlobStore
from inspection.store.central_link import link_args
from inspection.store.central_roles import STATION_GROUP
from inspection.store.models import (
    SHA_COLUMNS,
    Inspection,
    OutboxEntry,
    OutboxMessage,
    Review,
    StationBacklog,
    as_utc,
)
from inspection.store.outbox import backoff_s
from inspection.store.store import Store, first_line

log = logging.getLogger(__name__)

CENTRAL = "central"
"""The outbox sink of the rows waiting for the central store."""
CENTRAL_REVIEWS = "central_reviews"
"""The outbox sink of the station's reviews waiting for the central store (key: review id)."""
_SINKS = (CENTRAL, CENTRAL_REVIEWS)
_OWN = {"received_at", "clock_skewed"}
"""Columns the central store sets itself (migration 0013's trigger)."""
_COLUMNS = [column.key for column in Inspection.__table__.columns if column.key not in _OWN]
_RETRIED = ("08", "25", "40", "53", "55", "57", "58", "XX")
"""SQLSTATE classes of a central side that failed rather than refused the row: connection,
transaction state (a read-only standby), rollback (deadlock), resources, object state (a lock),
operator intervention, system and internal errors. Every other class refuses the row."""
REPORT_EVERY_S = 5.0
"""How often ``Forwarder.run`` reports the backlog to the central ``station_backlog``."""


class CentralBehind(RuntimeError):
    """The central store lacks a column a waiting row has a value in: upgrade it first."""


def central_entry(key: str, blob_bytes: int) -> OutboxEntry:
    """The outbox message that makes an inspection wait for the central store."""
    return OutboxEntry(CENTRAL, key, str(blob_bytes))


def central_outbox(
    blobs: BlobStore,
) -> Callable[[Mapping[str, Any], Mapping[str, float]], list[OutboxEntry]]:
    """The central store's ``station.pipeline.OutboxBuilder``: one message per result, keyed by
    its request id (else its id), its payload the bytes of its blobs (in ``blobs`` already)."""

    def build(fields: Mapping[str, Any], _timings: Mapping[str, float]) -> list[OutboxEntry]:
        shas = [fields[column] for column in SHA_COLUMNS if fields.get(column)]
        size = sum(blobs.path(sha).stat().st_size for sha in shas)
        return [central_entry(fields["request_id"] or fields["id"], size)]

    return build


@dataclass(frozen=True)
class Backlog:
    """What waits for the central store: rows, their blobs' bytes, the oldest's age, the rate
    over the last minute, and the rows refused for good (quarantined, not in ``rows``)."""

    rows: int
    bytes: int
    oldest_age_s: float | None
    rate_per_s: float
    quarantined: int = 0

    def alarm(self, after_s: float) -> bool:
        """Whether the oldest row waits over ``after_s``, or any row is quarantined."""
        late = self.oldest_age_s is not None and self.oldest_age_s > after_s
        return late or self.quarantined > 0


def backlog(store: Store, now: datetime | None = None) -> Backlog:
    """The station's central backlog (indexed reads of the pending messages)."""
    now = now or datetime.now(timezone.utc)
    waiting = OutboxMessage.sink.in_(_SINKS), OutboxMessage.delivered_at.is_(None)
    pending = select(
        func.count(),
        func.coalesce(func.sum(cast(OutboxMessage.payload, BigInteger)), 0),
        func.min(OutboxMessage.created_at),
    ).where(*waiting, OutboxMessage.quarantined_at.is_(None))
    parked = select(func.count()).where(*waiting, OutboxMessage.quarantined_at.is_not(None))
    recent = select(func.count()).where(
        OutboxMessage.sink.in_(_SINKS), OutboxMessage.delivered_at >= now - timedelta(minutes=1)
    )
    with store.session() as session:
        rows, size, oldest = session.execute(pending).one()
        moved, quarantined = session.scalar(recent) or 0, session.scalar(parked) or 0
    age = None if oldest is None else (now - as_utc(oldest)).total_seconds()
    return Backlog(int(rows), int(size), age, moved / 60.0, int(quarantined))


def quarantined(store: Store) -> list[tuple[str, str, str | None]]:
    """The quarantined messages, oldest first: (sink, key, the central store's refusal)."""
    query = (
        select(OutboxMessage.sink, OutboxMessage.key, OutboxMessage.last_error)
        .where(OutboxMessage.quarantined_at.is_not(None), OutboxMessage.delivered_at.is_(None))
        .order_by(OutboxMessage.id)
    )
    with store.session() as session:
        return [tuple(row) for row in session.execute(query)]


def release(store: Store) -> int:
    """Put every quarantined message back in line (the central side was fixed); returns how
    many. A row refused again is quarantined again."""
    parked = OutboxMessage.quarantined_at.is_not(None), OutboxMessage.delivered_at.is_(None)
    with store.session() as session:
        result = session.execute(update(OutboxMessage).where(*parked).values(quarantined_at=None))
        return int(result.rowcount or 0)


def _due(sink: str) -> tuple[Any, ...]:
    return (
        OutboxMessage.sink == sink,
        OutboxMessage.delivered_at.is_(None),
        OutboxMessage.quarantined_at.is_(None),
    )


def _refused(exc: DBAPIError | BlobMismatch) -> bool:
    """Whether the row was refused (a SQLSTATE outside ``_RETRIED``, a blob whose bytes do
    not hash to its name), not failed: a lost connection has no SQLSTATE."""
    if isinstance(exc, BlobMismatch):
        return True
    state = str(getattr(exc.orig, "sqlstate", None) or "")
    return bool(state) and state[:2] not in _RETRIED


class CentralSettings(Protocol):
    """Where and how to forward (``station.config.CentralConfig``)."""

    url: str
    blob_dir: Path
    batch: int
    alarm_after_seconds: float
    ca_file: Path | None
    allow_plaintext: bool


class Forwarder:
    """Forwards ``local``'s results and blobs to the central store (verified TLS unless
    ``allow_plaintext``: ``central_link``); ``start()``/``stop()`` run it in a thread."""

    def __init__(
        self,
        local: Store,
        central_url: str,
        central_blobs: Path,
        *,
        batch: int = 200,
        alarm_after_s: float | None = None,
        timeout_s: float = 60.0,
        backoff_max_s: float = 30.0,
        ca_file: Path | None = None,
        allow_plaintext: bool = False,
    ) -> None:
        self.local, self.batch, self.timeout_s = local, batch, timeout_s
        self.backoff_initial_s, self.backoff_max_s = 1.0, backoff_max_s
        self.alarm_after_s = alarm_after_s  # reported with the backlog, for the dashboard
        self.blobs = BlobStore(central_blobs)
        # a host that does not answer fails the batch within seconds, not TCP's minutes; naive
        # datetimes (SQLite's) are UTC
        options = {"connect_timeout": 5, "tcp_user_timeout": 15_000, "options": "-c timezone=UTC"}
        options |= link_args(central_url, ca_file, allow_plaintext=allow_plaintext)
        self.engine: Engine = create_engine(central_url, pool_pre_ping=True, connect_args=options)
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()
        event.listen(self.engine, "connect", lambda dbapi, _: self._connections.add(dbapi))
        self._columns: set[str] | None = None  # the central columns, read again after a failure
        self._station = False  # a station's role: the central trigger adds its rows to rollups
        self.forwarded = self.quarantined = 0  # rows this process forwarded / quarantined
        self.clashes = 0  # rows kept centrally under a distinct request key (request_keys)
        self._worker = Background("forward", self.run)
        self._report_refused = False

    @classmethod
    def from_config(cls, local: Store, central: CentralSettings) -> Forwarder:
        """The forwarder of a station's ``core.central`` section."""
        return cls(
            local,
            central.url,
            central.blob_dir,
            batch=central.batch,
            alarm_after_s=central.alarm_after_seconds,
            ca_file=central.ca_file,
            allow_plaintext=central.allow_plaintext,
        )

    def forward_once(self) -> int:
        """Forward the oldest batch of results, then of reviews whose result is central; the rows
        settled (0: nothing waits). The central side's failures raise."""
        results = (
            select(OutboxMessage.id, Inspection)
            .join(Inspection, Inspection.id == OutboxMessage.inspection_id)
            .where(*_due(CENTRAL))
            .order_by(OutboxMessage.id)
            .limit(self.batch)
        )
        result = aliased(OutboxMessage)
        result_waits = select(result.id).where(
            result.inspection_id == OutboxMessage.inspection_id,
            result.sink == CENTRAL,
            result.delivered_at.is_(None),
        )
        reviews = (
            select(OutboxMessage.id, Review)
            .join(Review, Review.id == cast(OutboxMessage.key, Integer))
            .where(*_due(CENTRAL_REVIEWS), ~result_waits.exists())
            .order_by(OutboxMessage.id)
            .limit(self.batch)
        )
        return self._deliver(results, self._insert) + self._deliver(reviews, self._review)

    def _deliver(self, query: Any, send: Any) -> int:
        """Send ``query``'s (message id, row) batch with ``send(rows)``; refused, row by row,
        quarantining each refused row. Returns the rows settled."""
        with self.local.session() as session:
            batch = session.execute(query).all()
        if not batch:
            return 0
        refused: dict[int, str] = {}
        try:
            send([row for _, row in batch])
        except (DBAPIError, BlobMismatch) as exc:
            if not _refused(exc):
                raise
            for message_id, row in batch:
                try:
                    send([row])
                except (DBAPIError, BlobMismatch) as exc:
                    if not _refused(exc):
                        raise
                    refused[message_id] = first_line(exc)
        self._settle([m for m, _ in batch if m not in refused], refused)
        return len(batch)

    def _insert(self, rows: list[Inspection]) -> None:
        with self._deadline(), Session(self.engine) as central, central.begin():
            columns = self._central_columns(central)
            values = [self._with_blobs(row, columns) for row in rows]
            insert = postgresql.insert(Inspection).values(values)
            insert = insert.on_conflict_do_nothing(index_elements=["id", "created_at"])
            returning = insert.returning(Inspection.id, Inspection.request_id)
            kept = dict(central.execute(returning).tuples().all())
            if not self._station:  # a station's rows: the central trigger adds them (0012)
                rollups.record(central, [row for row in rows if row.id in kept])
            for row in rows:
                if row.id in kept and kept[row.id] != row.request_id:
                    self.clashes += 1
                    self._clash(central, row, kept[row.id])

    @staticmethod
    def _clash(central: Session, row: Inspection, kept_as: str) -> None:
        """Log a row kept centrally under ``kept_as`` because its request id was held: by a row
        of its own station (its ids started over: a re-imaged line PC, a reset counter), or by
        another station's, which a station's role cannot even see (a squatter: a row stored
        before row-level security checked the key's station prefix, or by an unscoped link)."""
        holder = central.scalar(
            select(Inspection.station_id)
            .where(Inspection.request_id == row.request_id, Inspection.id != row.id)
            .limit(1)
        )
        if holder == row.station_id:
            log.warning(
                "request id %s was already station %s's at the central store: its ids started "
                "over (a re-imaged line PC or a reset counter); result %s kept there as %s",
                row.request_id, row.station_id, row.id, kept_as,
            )  # fmt: skip
            return
        who = f"station {holder!r}" if holder else "a row this station's role cannot see"
        log.error(
            "request id %s of station %s is held at the central store by %s: a squatter, not "
            "this station's ids starting over; result %s kept there as %s; check which role "
            "stored the holding row", row.request_id, row.station_id, who, row.id, kept_as,
        )  # fmt: skip

    def _review(self, reviews: list[Review]) -> None:
        with self._deadline(), Session(self.engine) as central, central.begin():
            for r in reviews:
                fields = (r.id, r.inspection_id, r.label, r.defect_type, r.reviewer, r.note)
                central.execute(select(func.forward_review(*fields, r.created_at, r.settles)))

    def _settle(self, delivered: list[int], refused: dict[int, str]) -> None:
        """Mark ``delivered`` delivered and quarantine ``refused`` ({message id: error})."""
        now = datetime.now(timezone.utc)
        with self.local.session() as session:
            if delivered:
                mark = update(OutboxMessage).where(OutboxMessage.id.in_(delivered))
                session.execute(mark.values(delivered_at=now))
            for message_id, error in refused.items():
                park = update(OutboxMessage).where(OutboxMessage.id == message_id)
                attempts = OutboxMessage.attempts + 1
                session.execute(
                    park.values(quarantined_at=now, last_error=error[:2000], attempts=attempts)
                )
                log.error(
                    "central store refused outbox message %d for good: %s; quarantined at the "
                    "station (`inspection station forward --release` once fixed), the rest flows",
                    message_id, error,
                )  # fmt: skip
        self.forwarded += len(delivered)
        self.quarantined += len(refused)

    def _central_columns(self, central: Session) -> set[str]:
        """The central ``inspections`` columns; also learns whether this is a station's role."""
        if self._columns is None:
            found = inspect(central.connection()).get_columns(Inspection.__tablename__)
            group = f"pg_has_role(current_user, to_regrole('{STATION_GROUP}'), 'MEMBER')"
            # learned together: a connection lost between the two caches neither (a station
            # taken for the owner would write the rollups it may not, and its rows be refused)
            self._station = bool(central.scalar(text(f"SELECT coalesce({group}, false)")))
            self._columns = {column["name"] for column in found}
        return self._columns

    def _with_blobs(self, row: Inspection, columns: set[str]) -> dict[str, Any]:
        """The row's values in the central ``columns``, its blobs copied (hashed: ``BlobMismatch``
        refuses the row) or, gone locally, the central row's blobs marked pruned."""
        values = {key: getattr(row, key) for key in _COLUMNS}
        newer = sorted(key for key in values.keys() - columns if values[key] is not None)
        if newer:
            raise CentralBehind(
                f"the central store has no column {', '.join(newer)} yet: run `inspection db "
                "upgrade` on it; the results wait here"
            )
        if row.blobs_pruned_at is None:
            for sha in filter(None, (getattr(row, column) for column in SHA_COLUMNS)):
                if self.blobs.holds(sha):
                    continue
                try:
                    data, suffix = self.local.blobs.read(sha)  # BlobMismatch: the row is refused
                except BlobMismatch:
                    raise
                except FileNotFoundError:
                    values["blobs_pruned_at"] = datetime.now(timezone.utc)
                    continue
                self.blobs.put(data, suffix)
        return {key: value for key, value in values.items() if key in columns}

    @contextmanager
    def _deadline(self) -> Iterator[None]:
        """Cut the central connections when the block outlasts ``timeout_s`` (libpq has no
        client-side query timeout: a silent host would hold the batch forever)."""
        timer = threading.Timer(self.timeout_s, self._cut)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def _cut(self) -> None:
        log.warning("central store: no answer in %g s; dropping its connections", self.timeout_s)
        for connection in list(self._connections):
            with suppress(Exception):  # closed meanwhile
                fd = connection.pgconn.socket
                with socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.shutdown(socket.SHUT_RDWR)  # libpq reads EOF: the batch fails

    def report(self) -> bool:
        """Upsert this station's ``backlog`` into the central ``station_backlog`` under the
        role's name; False (the first refusal logged) when it cannot be sent."""
        try:
            waiting = backlog(self.local)
            values = {
                "backlog_rows": waiting.rows,
                "backlog_bytes": waiting.bytes,
                "oldest_age_s": waiting.oldest_age_s,
                "rate_per_s": waiting.rate_per_s,
                "alarm_after_s": self.alarm_after_s,
                "quarantined": waiting.quarantined,
                "reported_at": func.now(),
            }
            insert = postgresql.insert(StationBacklog).values(
                station_id=func.current_user(), **values
            )
            upsert = insert.on_conflict_do_update(
                index_elements=[StationBacklog.station_id],
                set_={key: insert.excluded[key] for key in values},
            )
            with self._deadline(), Session(self.engine) as central, central.begin():
                central.execute(upsert)
        except SQLAlchemyError as exc:
            if not self._report_refused:
                log.warning("backlog report not sent to the central store: %s", first_line(exc))
            self._report_refused = True
            return False
        self._report_refused = False
        return True

    def drain(self) -> int:
        """Forward batches until nothing waits, then ``report``; returns the rows forwarded."""
        total = 0
        while moved := self.forward_once():
            total += moved
        self.report()
        return total

    def run(self, idle_s: float = 1.0) -> None:
        """Forward until ``stop()``, backing off while the central side fails; ``report`` the
        backlog every ``REPORT_EVERY_S`` while it answers."""
        failures, reported = 0, float("-inf")
        while not self._worker.stopping.is_set():
            try:
                moved = self.forward_once()
            except (SQLAlchemyError, OSError, CentralBehind) as exc:
                if not failures:
                    log.warning("central store: %s; results wait locally", first_line(exc))
                failures, moved, self._columns = failures + 1, 0, None
            else:
                if failures:
                    log.info("central store reachable again; forwarding the backlog")
                failures = 0
                if time.monotonic() - reported >= REPORT_EVERY_S:
                    self.report()
                    reported = time.monotonic()
            wait = backoff_s(failures, self) if failures else idle_s
            self._worker.stopping.wait(0 if moved >= self.batch else wait)

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        self._worker.stop()
        self.engine.dispose()
