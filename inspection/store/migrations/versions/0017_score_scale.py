"""score_scale: what scaled each stored score, and the audit rate it was drawn at

``inspections.score_scale`` names the normalisation a score was scaled under (its fingerprint,
``core.calibration.Normalization.fingerprint``): certification joins only scores on the
bundle's signed scale, never a re-calibrated station's. ``inspections.audit_rate`` keeps an
audit part's 1-in-N, so certification weighs each by its inclusion probability. Rows stored
before stay NULL (certification names and leaves them out).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"


def upgrade() -> None:
    with op.batch_alter_table("inspections") as batch:
        batch.add_column(sa.Column("score_scale", sa.String(16), nullable=True))
        batch.add_column(sa.Column("audit_rate", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inspections") as batch:
        batch.drop_column("audit_rate")
        batch.drop_column("score_scale")
