"""central_trust: a central store that trusts no single station

On a PostgreSQL central store with station roles, re-apply ``store.central_roles.secure``:
stations lose their rollup grants (a statement trigger adds their rows), row-level security is
forced with policies on ``current_user``, and only the owner creates objects in ``public``.
Earlier ``--writes`` ids join ``inspection_station_ids``. SQLite is unchanged.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

from inspection.store import central_roles

revision = "0012"
down_revision = "0011"

_HAS_GROUP = f"SELECT 1 FROM pg_roles WHERE rolname = '{central_roles.STATION_GROUP}'"
_EARLIER_IDS = f"""
SELECT DISTINCT r.rolname FROM pg_roles r
JOIN pg_auth_members m ON m.roleid = r.oid
JOIN pg_auth_members s ON s.member = m.member
JOIN pg_roles g ON g.oid = s.roleid AND g.rolname = '{central_roles.STATION_GROUP}'
WHERE NOT r.rolcanlogin AND NOT r.rolsuper AND r.rolname NOT LIKE 'pg\\_%'
  AND r.rolname NOT IN ('{"', '".join(central_roles.PROJECT_GROUPS)}')
"""
"""NOLOGIN roles a login station is a member of: the ids earlier ``--writes`` made."""


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql" or bind.execute(text(_HAS_GROUP)).scalar() is None:
        return
    ids = list(bind.execute(text(_EARLIER_IDS)).scalars())
    group = central_roles.STATION_IDS
    op.execute(
        f"DO $$BEGIN CREATE ROLE {group} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END$$"
    )
    for name in ids:
        op.execute(f'GRANT {group} TO "{name}"')
    central_roles.secure(bind)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql" or bind.execute(text(_HAS_GROUP)).scalar() is None:
        return
    group = central_roles.STATION_GROUP
    op.execute("DROP TRIGGER IF EXISTS station_rollups ON inspections")
    op.execute("DROP FUNCTION IF EXISTS inspection_station_rollups()")
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON rollup_hourly, rollup_scores TO {group}")
    for table in (*central_roles.STATION_TABLES, *central_roles.ROLLUP_TABLES):
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
    op.execute("DROP POLICY IF EXISTS own_station ON rollup_hourly")
    op.execute(
        f"CREATE POLICY own_station ON rollup_hourly AS RESTRICTIVE TO {group} "
        f"USING ({central_roles.OWN}) WITH CHECK ({central_roles.OWN})"
    )
    op.execute("DROP POLICY IF EXISTS own_station ON rollup_scores")
    op.execute("DROP POLICY IF EXISTS everyone ON rollup_scores")
    op.execute("ALTER TABLE rollup_scores DISABLE ROW LEVEL SECURITY")
