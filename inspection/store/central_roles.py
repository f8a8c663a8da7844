"""The central PostgreSQL's station roles: a login role per forwarding station, in one group
whose grants and row-level security confine it to its own stations' rows."""

from __future__ import annotations

import re
import secrets

from sqlalchemy import text

from inspection.core.errors import ConfigError
from inspection.store.store import Store

STATION_GROUP = "inspection_station"
"""The PostgreSQL group role of every station's login role (``grant_station``)."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def grant_station(central: Store, station: str, writes: tuple[str, ...] = ()) -> str:
    """Create (or re-key) PostgreSQL login role ``station`` for its forwarder; returns its new
    password. Row-level security lets it read and write only rows whose station id is its own
    or one of ``writes`` (roles it is made a member of): results, rollups and its backlog
    report (``station_backlog``); other roles see no change. Run by the
    central tables' owner, which needs ``CREATEROLE``. Safe to repeat."""
    for name in (station, *writes):
        if not _NAME.match(name):
            raise ConfigError(f"station role {name!r}: use 1-63 letters, digits, '.', '_', '-'")
    password = secrets.token_urlsafe(24)  # [A-Za-z0-9_-]: safe inside quotes
    own = (
        "station_id IN (SELECT rolname FROM pg_roles "
        "WHERE pg_has_role(current_user, oid, 'MEMBER'))"
    )
    statements = [
        f"DO $$BEGIN CREATE ROLE {STATION_GROUP} NOLOGIN; "
        "EXCEPTION WHEN duplicate_object THEN NULL; END$$",
        f"GRANT USAGE ON SCHEMA public TO {STATION_GROUP}",
        f"GRANT SELECT, INSERT ON inspections TO {STATION_GROUP}",
        f"GRANT SELECT, INSERT, UPDATE ON rollup_hourly, rollup_scores TO {STATION_GROUP}",
        f"GRANT SELECT, INSERT, UPDATE ON station_backlog TO {STATION_GROUP}",
    ]
    for table in ("inspections", "rollup_hourly", "station_backlog"):
        statements += [
            f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
            f"DROP POLICY IF EXISTS everyone ON {table}",
            f"CREATE POLICY everyone ON {table} USING (true) WITH CHECK (true)",
            f"DROP POLICY IF EXISTS own_station ON {table}",
            f"CREATE POLICY own_station ON {table} AS RESTRICTIVE TO {STATION_GROUP} "
            f"USING ({own}) WITH CHECK ({own})",
        ]
    statements += [
        f'DO $$BEGIN CREATE ROLE "{station}" LOGIN; '
        "EXCEPTION WHEN duplicate_object THEN NULL; END$$",
        f"ALTER ROLE \"{station}\" LOGIN PASSWORD '{password}'",
        f'GRANT {STATION_GROUP} TO "{station}"',
    ]
    for name in writes:
        statements += [
            f'DO $$BEGIN CREATE ROLE "{name}" NOLOGIN; '
            "EXCEPTION WHEN duplicate_object THEN NULL; END$$",
            f'GRANT "{name}" TO "{station}"',
        ]
    with central.engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))
    return password
