"""outbox by inspection: a result's messages found through its id

``ix_outbox_inspection`` (inspection_id, sink): a link that serves a result's payload as stored
(the OPC 40100 server's ``ResultContent``, ``Outbox.payload``) and retention deleting a result
with its messages probe this index instead of reading every message of the sink (a read that
grew with the outbox, ``reports/line/opc40100_latency.md``).

Building it reads the outbox once (its rows are delivered messages kept ``outbox_days``).

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_outbox_inspection", "outbox_messages", ["inspection_id", "sink"])


def downgrade() -> None:
    op.drop_index("ix_outbox_inspection", table_name="outbox_messages")
