"""Monthly partitions of the results table on PostgreSQL (migration 0011); SQLite has none.

``inspections`` is partitioned by RANGE of ``created_at``, one partition per UTC month
(``inspections_pYYYYMM``) plus ``inspections_default``, which takes any row no month holds, so
an insert never fails for want of a partition. ``ensure`` creates the months from the current
one to ``MONTHS_AHEAD`` after it: the migration runs it, and so does every retention prune
(``inspection store prune``, hourly under ``inspection scheduler``). A month is made as a plain
table, filled with whatever the default partition held of its range, then attached, so rows
that waited in the default partition move into their month. Retention drops whole months
(``store.retention``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Connection, text

TABLE = "inspections"
DEFAULT = f"{TABLE}_default"
MONTHS_AHEAD = 3
AUTOVACUUM = (
    "autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000, "
    "autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 20000"
)
"""Migration 0009's settings, per partition: a partitioned table takes no storage parameters."""
_BOUND = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")


@dataclass(frozen=True)
class Partition:
    """One partition of the results table: rows with ``start <= created_at < end``; the
    default partition has neither bound."""

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
    rows = connection.execute(
        text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            f"JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = '{TABLE}'::regclass"
        )
    )
    found = []
    for name, bound in rows:
        match = _BOUND.search(bound)
        start, end = (datetime.fromisoformat(b) for b in match.groups()) if match else (None, None)
        found.append(Partition(name, start, end))
    return sorted(found, key=lambda p: (p.start is None, p.start or datetime.min))


def month_of(moment: datetime, months: int = 0) -> datetime:
    """The first instant (UTC) of the month ``months`` after the one ``moment`` falls in."""
    moment = moment.astimezone(timezone.utc) if moment.tzinfo else moment
    index = moment.year * 12 + moment.month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=timezone.utc)


def ensure(connection: Connection, now: datetime, since: datetime | None = None) -> list[str]:
    """Create the default partition and every missing month from ``since``'s (default: ``now``'s)
    to ``MONTHS_AHEAD`` after ``now``'s, in ``connection``'s transaction; returns their names."""
    existing = partitions(connection)
    created = []
    if not any(p.start is None for p in existing):
        connection.execute(
            text(f"CREATE TABLE {DEFAULT} PARTITION OF {TABLE} DEFAULT WITH ({AUTOVACUUM})")
        )
        created.append(DEFAULT)
    held = {p.start for p in existing}
    month, last = month_of(since or now), month_of(now, MONTHS_AHEAD)
    while month <= last:
        if month not in held:
            created.append(_create(connection, month))
        month = month_of(month, 1)
    return created


def _create(connection: Connection, start: datetime) -> str:
    """Attach month ``start``'s partition, moving its rows out of the default partition."""
    name, end = f"{TABLE}_p{start:%Y%m}", month_of(start, 1)
    low, high = f"'{start.isoformat()}'", f"'{end.isoformat()}'"  # DDL takes no parameters
    statements = (
        f"CREATE TABLE {name} (LIKE {TABLE} INCLUDING DEFAULTS) WITH ({AUTOVACUUM})",
        f"WITH moved AS (DELETE FROM {DEFAULT} WHERE created_at >= {low} AND created_at < "
        f"{high} RETURNING *) INSERT INTO {name} SELECT * FROM moved",
        f"ALTER TABLE {TABLE} ATTACH PARTITION {name} FOR VALUES FROM ({low}) TO ({high})",
    )
    for statement in statements:
        connection.execute(text(statement))
    return name
