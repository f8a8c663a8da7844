"""Monthly partitions of the results table on PostgreSQL (migration 0011); SQLite has none.

``inspections`` is partitioned by RANGE of ``created_at``, one partition per UTC month
(``inspections_pYYYYMM``) plus ``inspections_default`` for any row no month holds, so an insert
never fails. ``ensure`` (the migration) and ``upkeep`` (every prune) make the months up to
``MONTHS_AHEAD``. A month is made as a plain table, filled with what the default partition
held of its range, then attached, writes waiting under a lock taken within ``LOCK_TIMEOUT``
(else the month is left to the next run): without it an insert already routed to the default
partition would fail its check once the month is attached. Retention drops whole months.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from inspection.store import request_keys

log = logging.getLogger(__name__)

TABLE = "inspections"
DEFAULT = f"{TABLE}_default"
MONTHS_AHEAD = 3
AUTOVACUUM = (
    "autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000, "
    "autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 20000"
)
"""Migration 0009's settings, per partition: a partitioned table takes no storage parameters."""
LOCK_TIMEOUT = "10s"
"""How long ``upkeep`` waits for the results table's writers to finish, per month."""
_BOUND = (
    "(regexp_match(pg_get_expr(c.relpartbound, c.oid), '{} \\(''([^'']+)''\\)'))[1]::timestamptz"
)


@dataclass(frozen=True)
class Partition:
    """A partition of the results table: ``start <= created_at < end`` (default: unbounded)."""

    name: str
    start: datetime | None
    end: datetime | None


def partitioned(connection: Connection) -> bool:
    """Whether the results table is partitioned (PostgreSQL at revision 0011 or later)."""
    if connection.dialect.name != "postgresql":
        return False
    kind = f"SELECT relkind FROM pg_class WHERE oid = to_regclass('{TABLE}')"
    return connection.execute(text(kind)).scalar() == "p"


def partitions(connection: Connection) -> list[Partition]:
    """The results table's partitions, oldest month first, the default partition last."""
    rows = connection.execute(  # bounds parsed by PostgreSQL: Python 3.10 reads no '+00'
        text(
            f"SELECT c.relname, {_BOUND.format('FROM')}, {_BOUND.format('TO')} FROM pg_inherits i "
            f"JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = '{TABLE}'::regclass"
        )
    )
    found = [Partition(name, start, end) for name, start, end in rows]
    return sorted(found, key=lambda p: (p.start is None, p.start or datetime.min))


def month_of(moment: datetime, months: int = 0) -> datetime:
    """The first instant (UTC) of the month ``months`` after the one ``moment`` falls in."""
    moment = moment.astimezone(timezone.utc) if moment.tzinfo else moment
    index = moment.year * 12 + moment.month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=timezone.utc)


def ensure(connection: Connection, now: datetime, since: datetime | None = None) -> list[str]:
    """Create the default partition and every missing month from ``since``'s (default: ``now``'s)
    to ``MONTHS_AHEAD`` after ``now``'s, in ``connection``'s transaction; returns their names."""
    created = []
    if not any(p.start is None for p in partitions(connection)):
        connection.execute(
            text(f"CREATE TABLE {DEFAULT} PARTITION OF {TABLE} DEFAULT WITH ({AUTOVACUUM})")
        )
        created.append(DEFAULT)
    made = (_create(connection, month) for month in missing(connection, now, since))
    return created + [name for name in made if name]


def missing(connection: Connection, now: datetime, since: datetime | None = None) -> list[datetime]:
    """The first instants of the months from ``since``'s (default: ``now``'s) to
    ``MONTHS_AHEAD`` after ``now``'s that have no partition."""
    held = {p.start for p in partitions(connection)}
    month, last, months = month_of(since or now), month_of(now, MONTHS_AHEAD), []
    while month <= last:
        months += [] if month in held else [month]
        month = month_of(month, 1)
    return months


def upkeep(engine: Engine, now: datetime) -> tuple[list[str], list[str]]:
    """The missing months from the first gap after the oldest partition to ``MONTHS_AHEAD``
    after ``now``'s, each in its own transaction while writers insert: (made, failed). A month that
    fails is logged and left to the next run; the others are made all the same."""
    with engine.begin() as connection:
        if not partitioned(connection):
            return [], []
        held = {p.start for p in partitions(connection) if p.start is not None}
        gap = min(held, default=now)
        while gap in held:
            gap = month_of(gap, 1)
        months = missing(connection, now, since=min(gap, now))
    made, failed = [], []
    for month in months:
        try:
            with engine.begin() as connection:
                connection.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
                made += [name] if (name := _create(connection, month)) else []
        except DBAPIError as exc:
            log.warning(
                "partition for %s not made, next prune retries: %s", f"{month:%Y-%m}", exc.orig
            )
            failed.append(f"{TABLE}_p{month:%Y%m}")
    return made, failed


def _create(connection: Connection, start: datetime) -> str | None:
    """Attach month ``start``'s partition, moving its rows out of the default partition, with
    writes locked until the transaction ends (see module doc); ``None`` when another prune
    attached it first."""
    name, end = f"{TABLE}_p{start:%Y%m}", month_of(start, 1)
    connection.execute(text(f"LOCK TABLE {TABLE} IN SHARE ROW EXCLUSIVE MODE"))
    if any(p.name == name for p in partitions(connection)):
        return None
    low, high = f"'{start.isoformat()}'", f"'{end.isoformat()}'"  # DDL takes no parameters
    statements = (
        f"CREATE TABLE {name} (LIKE {TABLE} INCLUDING DEFAULTS) WITH ({AUTOVACUUM})",
        f"WITH moved AS (DELETE FROM {DEFAULT} WHERE created_at >= {low} AND created_at < "
        f"{high} RETURNING *) INSERT INTO {name} SELECT * FROM moved",
        f"ALTER TABLE {TABLE} ATTACH PARTITION {name} FOR VALUES FROM ({low}) TO ({high})",
    )
    for statement in statements:
        connection.execute(text(statement))
    if connection.execute(text("SELECT to_regclass('request_keys')")).scalar() is not None:
        # the move's delete released the rows' request keys (``store.request_keys``)
        connection.execute(text(request_keys.RECLAIM_SQL.format(table=name)))
    return name
