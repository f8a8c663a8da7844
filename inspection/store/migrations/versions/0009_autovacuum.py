"""autovacuum for the results table by row counts, not by its size (PostgreSQL)

PostgreSQL vacuums a table once a fifth of it changed: at five million results that is a
million reviewed or pruned rows, so the pages of reviewed rows stay off the visibility map and
the review queue's index-only scans fetch them from the table. Vacuum after every 2,000 changed
rows and analyse after every 20,000 instead: each run reads only the pages that changed.
SQLite has no vacuum daemon; its pages need none for its covering indexes.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

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
