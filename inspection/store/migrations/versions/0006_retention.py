"""retention: audit-sample flag, pruned-blob marker, blob reference indexes

``audit_sample`` marks the random sample of parts chosen at write time (kept with images
for drift, retraining and unbiased threshold estimates). ``blobs_pruned_at`` is set when
retention removed a row's blobs: the row is kept, its image is gone. The sha indexes let
blob garbage collection ask "does any row still use this blob?" without a table scan.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"

_SHA_COLUMNS = ("image_sha", "map_sha", "mask_sha", "overlay_sha")


def upgrade() -> None:
    with op.batch_alter_table("inspections") as batch:
        batch.add_column(
            sa.Column("audit_sample", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("blobs_pruned_at", sa.DateTime(timezone=True), nullable=True))
    for column in _SHA_COLUMNS:
        op.create_index(f"ix_inspections_{column}", "inspections", [column])
    op.create_index(
        "ix_inspections_blobs_held", "inspections", ["product", "blobs_pruned_at", "created_at"]
    )
    op.create_index("ix_outbox_delivered", "outbox_messages", ["delivered_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_delivered", table_name="outbox_messages")
    op.drop_index("ix_inspections_blobs_held", table_name="inspections")
    for column in _SHA_COLUMNS:
        op.drop_index(f"ix_inspections_{column}", table_name="inspections")
    with op.batch_alter_table("inspections") as batch:
        batch.drop_column("blobs_pruned_at")
        batch.drop_column("audit_sample")
