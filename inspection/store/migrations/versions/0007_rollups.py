"""rollups: hourly aggregates for the dashboard, keyset indexes for the review queue

``rollup_hourly`` and ``rollup_scores`` are backfilled here; the queue pages by (score, id),
(verdict, score, id) and (created_at, id); reviewed parts by a partial (review_label,
created_at) index that "unreviewed" never picks.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from inspection.store import rollups

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    hour = sa.Column("hour", sa.DateTime(timezone=True), nullable=False)
    op.create_table(
        "rollup_hourly",
        hour,
        sa.Column("product", sa.String(length=64), nullable=False),
        sa.Column("station_id", sa.String(length=64), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("ng", sa.Integer(), nullable=False),
        sa.Column("score_sum", sa.Float(), nullable=False),
        sa.Column("latency_sum", sa.Float(), nullable=False),
        sa.Column("latency_max", sa.Float(), nullable=False),
        sa.Column("threshold_min", sa.Float(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_version", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("hour", "product", "station_id"),
    )
    op.create_table(
        "rollup_scores",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("product", sa.String(length=64), nullable=False),
        sa.Column("bin", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("hour", "product", "bin"),
    )
    op.create_index("ix_inspections_score_id", "inspections", ["score", "id"])
    op.create_index("ix_inspections_verdict_score", "inspections", ["verdict", "score", "id"])
    op.create_index("ix_inspections_created_id", "inspections", ["created_at", "id"])
    reviewed = sa.text("review_label IS NOT NULL")
    op.create_index(
        "ix_inspections_label_created",
        "inspections",
        ["review_label", "created_at", "product", "station_id"],
        sqlite_where=reviewed,
        postgresql_where=reviewed,
    )
    rollups.rebuild(op.get_bind(), per_station=False)


def downgrade() -> None:
    op.drop_index("ix_inspections_label_created", table_name="inspections")
    op.drop_index("ix_inspections_created_id", table_name="inspections")
    op.drop_index("ix_inspections_verdict_score", table_name="inspections")
    op.drop_index("ix_inspections_score_id", table_name="inspections")
    op.drop_table("rollup_scores")
    op.drop_table("rollup_hourly")
