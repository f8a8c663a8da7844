"""received_time: the central store's own receive time, quarantined messages, forwarded reviews

On PostgreSQL a ``BEFORE INSERT OR UPDATE`` trigger sets ``inspections.received_at`` to the
server's ``clock_timestamp()`` and flags ``clock_skewed`` when ``created_at`` (the station's
clock) is further from it than ``central_clock.skew_tolerance_s``; retention deletes a row only
when both times are past its window (docs/retention.md). The table stays partitioned by
``created_at``: a retry's new receive time would otherwise defeat ``ON CONFLICT DO NOTHING``.
Older rows keep ``received_at`` NULL (no rewrite).

Also ``outbox_messages.quarantined_at``, ``station_backlog.quarantined`` and ``reviews.origin``
with ``forward_review`` (``SECURITY DEFINER``: a station labels only its own stations' results).
SQLite gets the columns and no trigger.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from inspection.store.models import REVIEW_LABELS

revision = "0013"
down_revision = "0012"

SKEW_TOLERANCE_S = 300.0
_LABELS = ", ".join(f"'{label}'" for label in REVIEW_LABELS)
_DEFINER = "LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public"
_RECEIVED = f"""
CREATE FUNCTION inspections_received() RETURNS trigger {_DEFINER} AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        NEW.received_at := OLD.received_at;
        NEW.clock_skewed := OLD.clock_skewed;
        RETURN NEW;
    END IF;
    NEW.received_at := clock_timestamp();
    NEW.clock_skewed := abs(extract(epoch FROM NEW.received_at - NEW.created_at)) >
        coalesce((SELECT skew_tolerance_s FROM central_clock), {SKEW_TOLERANCE_S});
    RETURN NEW;
END $$"""
_FORWARD_REVIEW = f"""
CREATE FUNCTION forward_review(local_id bigint, inspection text, label text, defect_type text,
    reviewer text, note text, made_at timestamptz) RETURNS boolean {_DEFINER} AS $$
DECLARE
    station text;
BEGIN
    IF label NOT IN ({_LABELS}) THEN
        RAISE EXCEPTION 'review label % is not one of {", ".join(REVIEW_LABELS)}', label
            USING ERRCODE = 'check_violation';
    END IF;
    SELECT i.station_id INTO station FROM inspections i WHERE i.id = inspection;
    IF station IS NULL THEN
        RAISE EXCEPTION 'no central result %: its review waits for it', inspection
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = station
                   AND pg_has_role(session_user, r.oid, 'MEMBER')) THEN
        RAISE EXCEPTION 'result % is station %''s: role % may not review it',
            inspection, station, session_user USING ERRCODE = 'check_violation';
    END IF;
    INSERT INTO reviews (inspection_id, label, defect_type, reviewer, note, created_at, origin)
    VALUES (inspection, label, defect_type, reviewer, note, made_at,
            session_user || '/' || local_id)
    ON CONFLICT (origin) DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE inspections i SET review_label = label, review_defect_type = defect_type,
        reviewed_by = reviewer, reviewed_at = made_at
    WHERE i.id = inspection AND (i.reviewed_at IS NULL OR i.reviewed_at <= made_at);
    RETURN true;
END $$"""


def upgrade() -> None:
    op.add_column("inspections", sa.Column("received_at", sa.DateTime(timezone=True)))
    op.add_column(
        "inspections",
        sa.Column("clock_skewed", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    where = {"sqlite_where": sa.text("clock_skewed"), "postgresql_where": sa.text("clock_skewed")}
    op.create_index("ix_inspections_skewed", "inspections", ["station_id", "created_at"], **where)
    op.add_column("outbox_messages", sa.Column("quarantined_at", sa.DateTime(timezone=True)))
    op.add_column(
        "station_backlog",
        sa.Column("quarantined", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.add_column("reviews", sa.Column("origin", sa.String(length=160)))
    op.create_index("uq_reviews_origin", "reviews", ["origin"], unique=True)
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "CREATE TABLE central_clock (one boolean PRIMARY KEY DEFAULT true CHECK (one), "
        "skew_tolerance_s double precision NOT NULL CHECK (skew_tolerance_s > 0))"
    )
    op.execute(f"INSERT INTO central_clock (skew_tolerance_s) VALUES ({SKEW_TOLERANCE_S})")
    op.execute(_RECEIVED)
    op.execute(
        "CREATE TRIGGER inspections_received BEFORE INSERT OR UPDATE ON inspections "
        "FOR EACH ROW EXECUTE FUNCTION inspections_received()"
    )
    op.execute(_FORWARD_REVIEW)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION forward_review")
        op.execute("DROP TRIGGER inspections_received ON inspections")
        op.execute("DROP FUNCTION inspections_received")
        op.execute("DROP TABLE central_clock")
    op.drop_index("uq_reviews_origin", table_name="reviews")
    op.drop_index("ix_inspections_skewed", table_name="inspections")
    for table, column in (
        ("reviews", "origin"),
        ("station_backlog", "quarantined"),
        ("outbox_messages", "quarantined_at"),
        ("inspections", "clock_skewed"),
        ("inspections", "received_at"),
    ):
        with op.batch_alter_table(table) as batch:
            batch.drop_column(column)
