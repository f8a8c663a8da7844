"""review_regions: the defect region a reviewer painted

``reviews.region_sha`` names the mask blob a reviewer painted over the defect (0/255 PNG at the
image's size; indexed, so blob retention can ask whether a file is still referenced);
``inspections.review_region_sha`` mirrors the latest review's, as its label is mirrored.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"


def upgrade() -> None:
    with op.batch_alter_table("reviews") as batch:
        batch.add_column(sa.Column("region_sha", sa.String(64), nullable=True))
    op.create_index("ix_reviews_region_sha", "reviews", ["region_sha"])
    with op.batch_alter_table("inspections") as batch:
        batch.add_column(sa.Column("review_region_sha", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inspections") as batch:
        batch.drop_column("review_region_sha")
    op.drop_index("ix_reviews_region_sha", table_name="reviews")
    with op.batch_alter_table("reviews") as batch:
        batch.drop_column("region_sha")
