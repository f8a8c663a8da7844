"""The central PostgreSQL's station roles: a login role per forwarding station, confined by
grants and row-level security its own SQL cannot defeat (docs/security.md, "Central store").

A station's role is a member of ``STATION_GROUP``, which holds every grant (none on the
rollups: the central store adds a station's rows itself, ``ROLLUPS_SQL``); the ids it also
writes for are NOLOGIN roles in ``STATION_IDS``. Restrictive policies, forced on the owner too,
confine it to rows whose ``station_id`` is ``current_user`` or one of its ids. Passwords go as
SCRAM verifiers; no station creates temporary tables, and definers search ``pg_temp`` last.
"""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text

from inspection.core.errors import ConfigError

if TYPE_CHECKING:
    from inspection.store.store import Store

STATION_GROUP = "inspection_station"
"""The PostgreSQL group role of every station's login role (``grant_station``)."""
STATION_IDS = "inspection_station_ids"
"""The group of the station ids a station writes for besides its own (``--writes``)."""
PROJECT_GROUPS = (STATION_GROUP, STATION_IDS)
"""The project's own groups: ``grant_station`` grants membership in their members only."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
STATION_TABLES = ("inspections", "station_backlog")
"""Tables a station reads and writes: its own rows only."""
ROLLUP_TABLES = ("rollup_hourly", "rollup_scores")
"""Tables no station reads or writes: the central store keeps them (``ROLLUPS_SQL``)."""
_MEMBERS = (
    "SELECT member FROM pg_auth_members WHERE roleid = "
    "(SELECT oid FROM pg_roles WHERE rolname = '{}')"
)
OWN = (
    "station_id IN (SELECT r.rolname FROM pg_roles r "
    "WHERE pg_has_role(current_user, r.oid, 'MEMBER') AND ("
    f"r.rolname = current_user AND r.rolcanlogin AND r.oid IN ({_MEMBERS.format(STATION_GROUP)})"
    f" OR r.oid IN ({_MEMBERS.format(STATION_IDS)})))"
)
"""The station ids ``current_user`` may see and write: its own name if it is a login station,
and the ids in ``STATION_IDS`` it is a member of."""
OWN_KEY = "(request_id IS NULL OR split_part(request_id, '/', 1) = station_id)"
"""A result's request key is its own station's (``<station>/<id>``): no station stores under
another's next request id."""
ROLLUPS_SQL = f"""
CREATE OR REPLACE FUNCTION inspection_station_rollups() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF session_user NOT IN (SELECT r.rolname FROM pg_roles r JOIN pg_auth_members m
            ON m.member = r.oid JOIN pg_roles g ON g.oid = m.roleid
            WHERE g.rolname = '{STATION_GROUP}') THEN
        RETURN NULL;  -- the owner's own writers add to the rollups themselves (store.rollups)
    END IF;
    INSERT INTO public.rollup_hourly AS kept (hour, product, station_id, total, ng, score_sum,
        latency_sum, latency_max, threshold_min, first_seen, last_seen, model_version)
    SELECT hour, product, station_id, count(*), count(*) FILTER (WHERE verdict = 'NG'),
        sum(score), sum(latency_ms), max(latency_ms), min(threshold), min(created_at),
        max(created_at), (array_agg(model_version ORDER BY created_at DESC))[1]
    FROM (SELECT date_trunc('hour', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS hour, *
          FROM added) a
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (hour, product, station_id) DO UPDATE SET
        total = kept.total + excluded.total, ng = kept.ng + excluded.ng,
        score_sum = kept.score_sum + excluded.score_sum,
        latency_sum = kept.latency_sum + excluded.latency_sum,
        latency_max = greatest(kept.latency_max, excluded.latency_max),
        threshold_min = least(kept.threshold_min, excluded.threshold_min),
        first_seen = least(kept.first_seen, excluded.first_seen),
        last_seen = greatest(kept.last_seen, excluded.last_seen),
        model_version = CASE WHEN excluded.last_seen >= kept.last_seen
                        THEN excluded.model_version ELSE kept.model_version END;
    INSERT INTO public.rollup_scores AS kept (hour, product, station_id, bin, count)
    SELECT date_trunc('hour', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', product,
        station_id, least(greatest(floor(score * 100)::int, 0), 99), count(*)
    FROM added GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (hour, product, station_id, bin) DO UPDATE SET count = kept.count + excluded.count;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS station_rollups ON inspections;
CREATE TRIGGER station_rollups AFTER INSERT ON inspections REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION inspection_station_rollups();
"""
"""The central store adds the rows a station's own INSERT added (``ON CONFLICT DO NOTHING``
keeps repeats out) to the rollups, as ``store.rollups.record`` does, in key order (no
deadlock between forwarders); as the tables' owner, so stations need no grant on them."""


NO_TEMP = f"""DO $$BEGIN
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC, {STATION_GROUP}',
                   current_database());
END$$"""
"""No station creates temporary tables (a ``TEMP TABLE inspections`` of its own would stand in
for the real one wherever ``pg_temp`` is searched first); the database's owner keeps ``TEMP``."""


def grant_station(central: Store, station: str, writes: tuple[str, ...] = ()) -> str:
    """Create (or re-key) the login role ``station`` for its forwarder and return its password:
    it may read and write only rows of its own station id or of ``writes`` (ids in
    ``STATION_IDS``, made here). Run by the tables' owner (``CREATEROLE``); safe to repeat."""
    for name in (station, *writes):
        if not _NAME.match(name) or name in PROJECT_GROUPS or name.startswith("pg_"):
            raise ConfigError(
                f"station role {name!r}: use 1-63 letters, digits, '.', '_', '-' (not "
                f"{' or '.join(PROJECT_GROUPS)}, not pg_...)"
            )
    password = secrets.token_urlsafe(24)
    with central.engine.begin() as connection:
        for group in PROJECT_GROUPS:
            connection.execute(text(_create_role(group, login=False)))
        _check_existing(connection, station, writes)
        secure(connection)
        connection.execute(text(_create_role(station, login=True)))
        pgconn = connection.connection.dbapi_connection.pgconn  # type: ignore[union-attr]
        verifier = pgconn.encrypt_password(password.encode(), station.encode(), b"scram-sha-256")
        # only the verifier crosses the wire and may reach a server log, never the password
        key = f"ALTER ROLE \"{station}\" LOGIN PASSWORD '{verifier.decode()}'"
        connection.exec_driver_sql(key.replace("%", "%%"))  # no bind parameters: ':' is data
        connection.execute(text(f'GRANT {STATION_GROUP} TO "{station}"'))
        for name in writes:
            connection.execute(text(_create_role(name, login=False)))
            connection.execute(text(f'GRANT {STATION_IDS} TO "{name}"'))
            connection.execute(text(f'GRANT "{name}" TO "{station}"'))
    return password


def secure(connection: Connection) -> None:
    """Grants, forced row-level security and the rollup trigger of the central tables (the
    groups must exist); safe to repeat. Needs the tables' owner."""
    statements = [
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        f"GRANT USAGE ON SCHEMA public TO {STATION_GROUP}",
        f"REVOKE ALL ON {', '.join(STATION_TABLES + ROLLUP_TABLES)} FROM {STATION_GROUP}",
        f"GRANT SELECT, INSERT ON inspections TO {STATION_GROUP}",
        f"GRANT SELECT, INSERT, UPDATE ON station_backlog TO {STATION_GROUP}",
    ]
    for table in STATION_TABLES + ROLLUP_TABLES:
        rows = OWN if table in STATION_TABLES else "false"
        rows = f"{rows} AND {OWN_KEY}" if table == "inspections" else rows
        statements += [
            f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
            f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
            f"DROP POLICY IF EXISTS everyone ON {table}",
            f"CREATE POLICY everyone ON {table} USING (true) WITH CHECK (true)",
            f"DROP POLICY IF EXISTS own_station ON {table}",
            f"CREATE POLICY own_station ON {table} AS RESTRICTIVE TO {STATION_GROUP} "
            f"USING ({rows}) WITH CHECK ({rows})",
        ]
    for statement in statements:
        connection.execute(text(statement))
    connection.execute(text(NO_TEMP))
    connection.execute(text(ROLLUPS_SQL))
    connection.execute(text("REVOKE ALL ON FUNCTION inspection_station_rollups() FROM PUBLIC"))


def _check_existing(connection: Connection, station: str, writes: tuple[str, ...]) -> None:
    """Refuse a ``station`` that is an existing role but not a station's, and a ``writes`` id
    that is an existing role but not one of ``STATION_IDS``: making a station a member of it
    would hand the station that role's rights (the owner's, a person's, a built-in one)."""
    members = text(
        "SELECT r.rolname, coalesce(bool_or(g.rolname = :group), false) FROM pg_roles r LEFT JOIN "
        "pg_auth_members m ON m.member = r.oid LEFT JOIN pg_roles g ON g.oid = m.roleid "
        "WHERE r.rolname = ANY(:names) GROUP BY r.rolname"
    )
    found = dict(connection.execute(members, {"group": STATION_GROUP, "names": [station]}).all())
    if found.get(station) is False:
        raise ConfigError(
            f"station role {station!r} exists and is not a station's (a member of "
            f"{STATION_GROUP}): refusing to re-key it or widen its rights; choose another id"
        )
    found = dict(connection.execute(members, {"group": STATION_IDS, "names": list(writes)}).all())
    for name in writes:
        if found.get(name) is False:
            raise ConfigError(
                f"--writes {name!r}: an existing role that is not one of this project's station "
                f"ids (members of {STATION_IDS}); making {station!r} a member would hand it "
                "that role's rights. Name a new station id or one an earlier --writes made"
            )


def _create_role(name: str, *, login: bool) -> str:
    kind = "LOGIN" if login else "NOLOGIN"
    return (
        f'DO $$BEGIN CREATE ROLE "{name}" {kind}; EXCEPTION WHEN duplicate_object THEN NULL; END$$'
    )
