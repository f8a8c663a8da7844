"""central_keys: one result per request id, rollups per station, definers that ignore pg_temp

- ``rollup_scores`` gains ``station_id`` in its key (older counts keep station ``''``).
- PostgreSQL: ``request_keys`` and its triggers (``store.request_keys``); rows already sharing
  a request id keep the first received under it, the others get a distinct key.
- PostgreSQL: the ``SECURITY DEFINER`` functions search ``pg_temp`` last (a station's
  ``TEMP TABLE inspections`` stood in for the real one), and ``central_roles.secure`` again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy import text

from inspection.store import central_roles, request_keys

revision = "0016"
down_revision = "0015"

_DEFINERS = (
    "inspections_received()",
    "forward_review(bigint, text, text, text, text, text, timestamptz)",
)
_HAS_GROUP = f"SELECT 1 FROM pg_roles WHERE rolname = '{central_roles.STATION_GROUP}'"


def upgrade() -> None:
    _rekey_scores(["hour", "product", "station_id", "bin"], add=True)
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for function in _DEFINERS:
        op.execute(f"ALTER FUNCTION {function} SET search_path = pg_catalog, public, pg_temp")
    request_keys.install(bind)
    if bind.execute(text(_HAS_GROUP)).scalar() is not None:
        central_roles.secure(bind)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        if bind.execute(text(_HAS_GROUP)).scalar() is not None:  # 0015's rollup trigger
            op.execute(central_roles.ROLLUPS_SQL.replace(_SCORES, _SCORES_0015))
        op.execute("DROP TRIGGER inspections_request_key ON inspections")
        op.execute("DROP TRIGGER inspections_request_key_gone ON inspections")
        op.execute("DROP FUNCTION inspections_request_key()")
        op.execute("DROP TABLE request_keys")
        for function in _DEFINERS:
            op.execute(f"ALTER FUNCTION {function} SET search_path = pg_catalog, public")
    op.execute(_FOLD)
    _rekey_scores(["hour", "product", "bin"], add=False)


_SCORES = central_roles.ROLLUPS_SQL[
    central_roles.ROLLUPS_SQL.index("    INSERT INTO public.rollup_scores") :
].split("RETURN NULL;")[0]
_SCORES_0015 = """    INSERT INTO public.rollup_scores AS kept (hour, product, bin, count)
    SELECT date_trunc('hour', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', product,
        least(greatest(floor(score * 100)::int, 0), 99), count(*)
    FROM added GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (hour, product, bin) DO UPDATE SET count = kept.count + excluded.count;
    """
"""The station rollup trigger's histogram statement as 0015 left it (downgrade)."""
_SAME = "s.hour = k.hour AND s.product = k.product AND s.bin = k.bin"
_FOLD = f"""UPDATE rollup_scores AS k SET station_id = '',
    count = (SELECT sum(s.count) FROM rollup_scores s WHERE {_SAME})
WHERE station_id = (SELECT min(s.station_id) FROM rollup_scores s WHERE {_SAME})"""
"""Downgrade: each (hour, product, bin)'s counts summed into its first station's row."""


def _rekey_scores(key: list[str], *, add: bool) -> None:
    """Give ``rollup_scores`` the primary key ``key``, adding or dropping ``station_id``; on
    PostgreSQL in place (its grants and row-level security stay)."""
    if op.get_bind().dialect.name == "postgresql":
        if add:
            op.execute("ALTER TABLE rollup_scores ADD station_id varchar(64) NOT NULL DEFAULT ''")
        else:
            op.execute("DELETE FROM rollup_scores WHERE station_id <> ''")
        op.execute("ALTER TABLE rollup_scores DROP CONSTRAINT rollup_scores_pkey")
        if not add:
            op.execute("ALTER TABLE rollup_scores DROP COLUMN station_id")
        op.execute(f"ALTER TABLE rollup_scores ADD PRIMARY KEY ({', '.join(key)})")
        return
    kept = [name for name in key if name != "station_id"] + ["count"]
    op.create_table(
        "rollup_scores_new",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("product", sa.String(length=64), nullable=False),
        *[sa.Column("station_id", sa.String(64), nullable=False, server_default="")] * add,
        sa.Column("bin", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(*key),
    )
    where = "" if add else " WHERE station_id = ''"
    columns = ", ".join(kept)
    op.execute(
        f"INSERT INTO rollup_scores_new ({columns}) SELECT {columns} FROM rollup_scores{where}"
    )
    op.drop_table("rollup_scores")
    op.rename_table("rollup_scores_new", "rollup_scores")
