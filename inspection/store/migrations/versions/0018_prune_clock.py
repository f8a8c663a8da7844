"""prune_clock: the time the last prune trusted, in the store rather than a dot file

One row (``store.trusted_clock``): a backup and restore of the database keeps it, where a copy
of the blob folder could skip ``.prune-clock``. A station's dot file is moved into the row by
its next prune. No role but the store's owner reads or writes it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"


def upgrade() -> None:
    op.create_table(
        "prune_clock",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("wall", sa.DateTime(timezone=True), nullable=False),
        sa.Column("boot", sa.String(length=64), nullable=True),
        sa.Column("monotonic", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("prune_clock")
