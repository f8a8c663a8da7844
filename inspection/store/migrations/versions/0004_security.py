"""security: request ids fit their column on PostgreSQL, payload digests, token roles

The stored idempotency key is ``<station id (64)>/<request id (80)>`` = up to 145 characters,
which did not fit ``String(128)`` on PostgreSQL (SQLite does not enforce lengths). Replays are
checked against ``payload_digest``; ``api_tokens.role`` separates stations from people.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.add_column("inspections", sa.Column("payload_digest", sa.String(length=64), nullable=True))
    op.add_column(
        "api_tokens",
        sa.Column("role", sa.String(length=16), nullable=False, server_default="station"),
    )
    if op.get_bind().dialect.name != "sqlite":  # SQLite does not enforce VARCHAR lengths
        _resize(sa.String(length=128), sa.String(length=160))


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        _resize(sa.String(length=160), sa.String(length=128))
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("role")
    with op.batch_alter_table("inspections") as batch:
        batch.drop_column("payload_digest")


def _resize(old: sa.String, new: sa.String) -> None:
    op.alter_column("inspections", "request_id", existing_type=old, type_=new)
    op.alter_column("outbox_messages", "key", existing_type=old, type_=new)
