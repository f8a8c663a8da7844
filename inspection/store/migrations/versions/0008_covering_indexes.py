"""covering indexes: the review queue and the reviewed scores read index pages only

``ix_inspections_queue`` (score, id, threshold, verdict, review_label, product, station_id)
replaces (score, id) and (verdict, score, id): the queue's filters are evaluated on the index,
so its count, a jump to page N (the anchor's offset) and a page's search touch no table page
but the page's own rows. ``ix_inspections_reviewed`` (product, review_label, audit_sample,
score), a partial index of reviewed rows, replaces the full (product, review_label,
reviewed_at): the Thresholds page's reviewed and audit-sample scores come from it alone, and a
stored inspection no longer adds an entry to it.

Building them reads the whole results table once (about a minute per five million rows) and
blocks writes meanwhile: run ``inspection db upgrade`` while the line is stopped.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

QUEUE = ["score", "id", "threshold", "verdict", "review_label", "product", "station_id"]
REVIEWED = ["product", "review_label", "audit_sample", "score"]


def upgrade() -> None:
    op.drop_index("ix_inspections_score_id", table_name="inspections")
    op.drop_index("ix_inspections_verdict_score", table_name="inspections")
    op.drop_index("ix_inspections_review", table_name="inspections")
    op.create_index("ix_inspections_queue", "inspections", QUEUE)
    reviewed = sa.text("review_label IS NOT NULL")
    op.create_index(
        "ix_inspections_reviewed",
        "inspections",
        REVIEWED,
        sqlite_where=reviewed,
        postgresql_where=reviewed,
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ANALYZE inspections")  # the planner's figures for the new indexes


def downgrade() -> None:
    op.drop_index("ix_inspections_reviewed", table_name="inspections")
    op.drop_index("ix_inspections_queue", table_name="inspections")
    op.create_index(
        "ix_inspections_review", "inspections", ["product", "review_label", "reviewed_at"]
    )
    op.create_index("ix_inspections_verdict_score", "inspections", ["verdict", "score", "id"])
    op.create_index("ix_inspections_score_id", "inspections", ["score", "id"])
