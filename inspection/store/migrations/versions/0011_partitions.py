"""partitions: the results table partitioned by month on PostgreSQL (SQLite unchanged)

Retention drops a month whole instead of deleting its rows (``store.partitions``). Unique keys
must hold the partition key: the primary key becomes (id, created_at) and the request key
(request_id, created_at); a forwarded row sent again keeps its first timestamp, so ``ON
CONFLICT DO NOTHING`` still finds it. Reviews and outbox messages lose their foreign keys
(none can point at a partitioned id alone). The upgrade copies every row and blocks writes.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import Connection, text

from inspection.store import partitions
from inspection.store.models import utcnow

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _rebuild(op.get_bind(), partitioned=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _rebuild(op.get_bind(), partitioned=False)


def _rebuild(bind: Connection, *, partitioned: bool) -> None:
    """Recreate ``inspections`` partitioned (or plain) around its rows, keeping its indexes,
    grants and policies; the keys hold ``created_at`` when partitioned."""
    carried = _carried(bind)
    op.execute("ALTER TABLE inspections RENAME TO inspections_old")
    by = " PARTITION BY RANGE (created_at)" if partitioned else f" WITH ({partitions.AUTOVACUUM})"
    op.execute(f"CREATE TABLE inspections (LIKE inspections_old INCLUDING DEFAULTS){by}")
    if partitioned:
        oldest = bind.execute(text("SELECT min(created_at) FROM inspections_old")).scalar()
        partitions.ensure(bind, utcnow(), since=oldest)
    op.execute("INSERT INTO inspections SELECT * FROM inspections_old")
    op.execute("DROP TABLE inspections_old CASCADE")  # with the reviews' and outbox's foreign keys
    key = ", created_at" if partitioned else ""
    op.execute(f"ALTER TABLE inspections ADD CONSTRAINT inspections_pkey PRIMARY KEY (id{key})")
    op.execute(
        f"ALTER TABLE inspections ADD CONSTRAINT inspections_request_id_key "
        f"UNIQUE (request_id{key})"
    )
    for statement in carried:
        op.execute(statement)
    if not partitioned:
        for table in ("reviews", "outbox_messages"):
            op.create_foreign_key(
                f"{table}_inspection_id_fkey", table, "inspections", ["inspection_id"], ["id"]
            )
    op.execute("ANALYZE inspections")


def _carried(bind: Connection) -> list[str]:
    """The statements that give a new ``inspections`` the current one's indexes (but its two
    keys), grants, row-level security and policies."""
    statements = [
        index.replace(" ON ONLY ", " ON ")
        for index in bind.execute(
            text(
                "SELECT indexdef FROM pg_indexes i WHERE tablename = 'inspections' AND NOT "
                "EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
            )
        ).scalars()
    ]
    grants = bind.execute(
        text(
            "SELECT grantee, string_agg(privilege_type, ', ') FROM "
            "information_schema.role_table_grants WHERE table_name = 'inspections' AND grantee "
            "<> (SELECT tableowner FROM pg_tables WHERE tablename = 'inspections') GROUP BY 1"
        )
    )
    statements += [f"GRANT {what} ON inspections TO {_role(who)}" for who, what in grants]
    if bind.execute(
        text("SELECT relrowsecurity FROM pg_class WHERE oid = 'inspections'::regclass")
    ).scalar():
        statements.append("ALTER TABLE inspections ENABLE ROW LEVEL SECURITY")
    policies = bind.execute(
        text(
            "SELECT policyname, permissive, roles, cmd, qual, with_check FROM pg_policies "
            "WHERE tablename = 'inspections'"
        )
    )
    for name, kind, roles, cmd, qual, check in policies:
        statement = f'CREATE POLICY "{name}" ON inspections AS {kind} FOR {cmd} '
        statement += f"TO {', '.join(map(_role, roles))}"
        statement += f" USING ({qual})" if qual else ""
        statements.append(statement + (f" WITH CHECK ({check})" if check else ""))
    return statements


def _role(name: str) -> str:
    return name if name.upper() == "PUBLIC" else f'"{name}"'
