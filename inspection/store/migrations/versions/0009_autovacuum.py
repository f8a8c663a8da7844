"""autovacuum for the results table by row counts, not by its size (PostgreSQL)

By default a table is vacuumed once a fifth of it changed, so reviewed or pruned pages stay off
the visibility map and the queue's index-only scans read the table. Vacuum every 2,000 and
analyse every 20,000 changed rows instead. SQLite needs none.
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"

SETTINGS = {
    "autovacuum_vacuum_scale_factor": "0",
    "autovacuum_vacuum_threshold": "2000",
    "autovacuum_analyze_scale_factor": "0",
    "autovacuum_analyze_threshold": "20000",
}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        pairs = ", ".join(f"{name} = {value}" for name, value in SETTINGS.items())
        op.execute(f"ALTER TABLE inspections SET ({pairs})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE inspections RESET ({', '.join(SETTINGS)})")
