"""index inspections by time alone, for site-wide dashboard aggregations"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_index("ix_inspections_created", "inspections", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_inspections_created", table_name="inspections")
