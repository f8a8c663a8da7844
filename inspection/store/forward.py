"""Store and forward: a station commits each result locally, answers, then forwards it centrally.

A station with a central store configured writes one outbox message for the sink ``central``
with every inspection, in the inspection's own local transaction (``central_entry``; its payload
is the bytes of the row's blobs, what ``backlog`` sums). ``Forwarder`` sends those rows to the
central PostgreSQL oldest first, a batch at a time:

1. the batch's blobs are copied into the central blob folder; content-addressed, so a blob
   already there is not sent again;
2. the rows go in one central transaction, ``INSERT ... ON CONFLICT DO NOTHING`` (rows are
   unique by id and by ``<station>/<request id>``), and only the rows it inserted are added
   to the central rollups;
3. the messages are marked delivered locally, only after that commit.

A crash (``kill -9`` of either side) before 3 forwards the batch again, which inserts
nothing: 0 lost, 0 duplicated. A central side that takes longer than ``timeout_s`` to answer
(a hung host, a network that drops packets) has its connections cut, and the batch is retried
(``outbox.backoff_s``). The station connects as its own PostgreSQL role, which row-level
security lets write only the rows of its own station ids (``central_roles.grant_station``).

Rows carry the columns the central ``inspections`` table has, read from its catalog after each
failure, so stations a release apart share one central store: a station one release behind
leaves a newer column to its default; a station one release ahead leaves out its new column
while the central store lacks it, and stops at the first row with a value in it
(``CentralBehind``, retried) until the central store is upgraded.

Every few seconds, whether or not anything waits, the forwarder also upserts its ``backlog``
into the central ``station_backlog`` under its role's name (``report``): the dashboard's
view of each station's backlog, which otherwise lives only in the station's local store.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Engine,
    cast,
    create_engine,
    event,
    func,
    inspect,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from inspection.store import rollups
from inspection.store.blobs import BlobStore
from inspection.store.central_link import link_args
from inspection.store.models import (
    SHA_COLUMNS,
    Inspection,
    OutboxEntry,
    OutboxMessage,
    StationBacklog,
    as_utc,
)
from inspection.store.outbox import backoff_s
from inspection.store.store import Store, first_line

log = logging.getLogger(__name__)

CENTRAL = "central"
"""The outbox sink of the rows waiting for the central store."""
_COLUMNS = [column.key for column in Inspection.__table__.columns]
REPORT_EVERY_S = 5.0
"""How often ``Forwarder.run`` reports the backlog to the central ``station_backlog``."""


class CentralBehind(RuntimeError):
    """The central store lacks a column a waiting row has a value in: upgrade it first."""


def central_entry(key: str, blob_bytes: int) -> OutboxEntry:
    """The outbox message that makes an inspection wait for the central store."""
    return OutboxEntry(CENTRAL, key, str(blob_bytes))


@dataclass(frozen=True)
class Backlog:
    """What waits for the central store: rows, their blobs' bytes, the oldest one's age, and
    the rows forwarded in the last minute per second."""

    rows: int
    bytes: int
    oldest_age_s: float | None
    rate_per_s: float

    def alarm(self, after_s: float) -> bool:
        return self.oldest_age_s is not None and self.oldest_age_s > after_s


def backlog(store: Store, now: datetime | None = None) -> Backlog:
    """The station's central backlog (one indexed read of the pending messages)."""
    now = now or datetime.now(timezone.utc)
    waiting = OutboxMessage.sink == CENTRAL, OutboxMessage.delivered_at.is_(None)
    pending = select(
        func.count(),
        func.coalesce(func.sum(cast(OutboxMessage.payload, BigInteger)), 0),
        func.min(OutboxMessage.created_at),
    ).where(*waiting)
    recent = select(func.count()).where(
        OutboxMessage.sink == CENTRAL, OutboxMessage.delivered_at >= now - timedelta(minutes=1)
    )
    with store.session() as session:
        rows, size, oldest = session.execute(pending).one()
        moved = session.scalar(recent) or 0
    age = None if oldest is None else (now - as_utc(oldest)).total_seconds()
    return Backlog(int(rows), int(size), age, moved / 60.0)


class Forwarder:
    """Forwards ``local``'s results to the central store (``central_url``, PostgreSQL, over TLS
    verified against ``ca_file`` unless ``allow_plaintext``: ``central_link``) and its blobs
    into ``central_blobs``; ``start()``/``stop()`` run it in a thread."""

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
        self.local = local
        self.batch = batch
        self.timeout_s = timeout_s
        self.backoff_initial_s, self.backoff_max_s = 1.0, backoff_max_s
        self.alarm_after_s = alarm_after_s
        """The station's backlog alarm setting, reported with the backlog for the dashboard."""
        self.blobs = BlobStore(central_blobs)
        # a host that does not answer fails the batch within seconds, not TCP's minutes; naive
        # datetimes (SQLite's) are UTC
        options = {"connect_timeout": 5, "tcp_user_timeout": 15_000, "options": "-c timezone=UTC"}
        options |= link_args(central_url, ca_file, allow_plaintext=allow_plaintext)
        self.engine: Engine = create_engine(central_url, pool_pre_ping=True, connect_args=options)
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()
        event.listen(self.engine, "connect", lambda dbapi, _: self._connections.add(dbapi))
        self._columns: set[str] | None = None
        """The central ``inspections`` columns, read again after each failure."""
        self.forwarded = 0
        """Rows marked forwarded by this process (a Prometheus counter)."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._report_refused = False

    def forward_once(self) -> int:
        """Forward the oldest batch; returns how many rows it marked forwarded (0: nothing
        waits). Raises SQLAlchemy's or the file system's error when the central side fails."""
        query = (
            select(OutboxMessage.id, Inspection)
            .join(Inspection, Inspection.id == OutboxMessage.inspection_id)
            .where(OutboxMessage.sink == CENTRAL, OutboxMessage.delivered_at.is_(None))
            .order_by(OutboxMessage.id)
            .limit(self.batch)
        )
        with self.local.session() as session:
            batch = session.execute(query).all()
        if not batch:
            return 0
        with self._deadline(), Session(self.engine) as central, central.begin():
            columns = self._central_columns(central)
            rows = [self._with_blobs(row, columns) for _, row in batch]
            insert = postgresql.insert(Inspection).values(rows).on_conflict_do_nothing()
            inserted = set(central.scalars(insert.returning(Inspection.id)))
            rollups.record(central, [row for _, row in batch if row.id in inserted])
        ids = [message_id for message_id, _ in batch]
        with self.local.session() as session:
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(ids))
                .values(delivered_at=datetime.now(timezone.utc))
            )
        self.forwarded += len(ids)
        return len(ids)

    def _central_columns(self, central: Session) -> set[str]:
        if self._columns is None:
            found = inspect(central.connection()).get_columns(Inspection.__tablename__)
            self._columns = {column["name"] for column in found}
        return self._columns

    def _with_blobs(self, row: Inspection, columns: set[str]) -> dict[str, Any]:
        """The row's values in the central ``columns``, after its blobs are in the central
        folder; a blob gone locally (local retention) marks the central row's blobs pruned."""
        values = {key: getattr(row, key) for key in _COLUMNS}
        newer = sorted(key for key in values.keys() - columns if values[key] is not None)
        if newer:
            raise CentralBehind(
                f"the central store has no column {', '.join(newer)} yet: run `inspection db "
                "upgrade` on it; the results wait here"
            )
        if row.blobs_pruned_at is None:
            for sha in filter(None, (getattr(row, column) for column in SHA_COLUMNS)):
                if self.blobs.exists(sha):
                    continue
                try:
                    path = self.local.blobs.path(sha)
                except FileNotFoundError:
                    values["blobs_pruned_at"] = datetime.now(timezone.utc)
                    continue
                self.blobs.put(path.read_bytes(), path.suffix)
        return {key: value for key, value in values.items() if key in columns}

    @contextmanager
    def _deadline(self) -> Iterator[None]:
        """Cut this forwarder's central connections when the block outlasts ``timeout_s``:
        libpq has no client-side query timeout, so a central host that stops answering (or a
        network that drops its packets) would hold the batch forever."""
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
        """Upsert this station's ``backlog`` into the central ``station_backlog``, keyed by the
        central role's name (row-level security: its own row only). Returns False, logging the
        first refusal, when it cannot be sent (a central schema or a role from before the table):
        forwarding goes on without it."""
        try:
            waiting = backlog(self.local)
            values = {
                "backlog_rows": waiting.rows,
                "backlog_bytes": waiting.bytes,
                "oldest_age_s": waiting.oldest_age_s,
                "rate_per_s": waiting.rate_per_s,
                "alarm_after_s": self.alarm_after_s,
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
        """Forward until ``stop()``: at once while a full batch moved, after ``idle_s`` when
        the backlog is empty, backing off (``backoff_s``) while the central side fails;
        ``report`` the backlog every ``REPORT_EVERY_S`` while the central side answers."""
        failures, reported = 0, float("-inf")
        while not self._stop.is_set():
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
            self._stop.wait(0 if moved == self.batch else wait)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="forward", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.engine.dispose()
