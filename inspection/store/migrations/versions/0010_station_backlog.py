"""station_backlog: each forwarding station's central backlog, for the dashboard

A station's backlog lives in its own local store; its forwarder upserts what it counts (rows,
blob bytes, the oldest waiting result's age, the forwarding rate, its alarm setting) into
this table every few seconds, one row per station role. Row-level security confines a
station's role to its own row; ``inspection db station-role`` grants and confines it
(``store.central_roles.grant_station``), as for the results. SQLite gets the table without it.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


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
