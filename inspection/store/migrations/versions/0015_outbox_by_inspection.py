"""outbox by inspection: a result's messages found through its id

``ix_outbox_inspection`` (inspection_id, sink): serving a stored payload (OPC 40100
``ResultContent``) and deleting a result's messages probe it instead of reading the sink's
messages. Building it reads the outbox once.
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"


def upgrade() -> None:
    op.create_index("ix_outbox_inspection", "outbox_messages", ["inspection_id", "sink"])


def downgrade() -> None:
    op.drop_index("ix_outbox_inspection", table_name="outbox_messages")
