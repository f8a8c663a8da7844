"""index inspections by time alone, for site-wide dashboard aggregations

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_inspections_created", "inspections", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_inspections_created", table_name="inspections")
