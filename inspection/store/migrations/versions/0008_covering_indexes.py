"""covering indexes: the review queue and the reviewed scores read index pages only

``ix_inspections_queue`` (score, id, threshold, verdict, review_label, product, station_id)
replaces (score, id) and (verdict, score, id); ``ix_inspections_reviewed`` (product,
review_label, audit_sample, score), partial on reviewed rows, replaces (product, review_label,
reviewed_at). Building them reads the table once and blocks writes: upgrade with the line
stopped.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"

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
