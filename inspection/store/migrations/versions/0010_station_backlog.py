"""station_backlog: each forwarding station's central backlog, for the dashboard

One row per station role, upserted by its forwarder every few seconds; row-level security
confines a role to its own row (``central_roles.grant_station``). SQLite: the table only.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    op.create_table(
        "station_backlog",
        sa.Column("station_id", sa.String(length=64), nullable=False),
        sa.Column("backlog_rows", sa.BigInteger(), nullable=False),
        sa.Column("backlog_bytes", sa.BigInteger(), nullable=False),
        sa.Column("oldest_age_s", sa.Float(), nullable=True),
        sa.Column("rate_per_s", sa.Float(), nullable=False),
        sa.Column("alarm_after_s", sa.Float(), nullable=True),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("station_id"),
    )


def downgrade() -> None:
    op.drop_table("station_backlog")
