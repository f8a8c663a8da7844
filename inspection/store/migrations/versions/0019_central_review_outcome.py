"""central_review_outcome: a forwarded review decides the central part as it did the station's

``reviews.settles`` records an admin's settling label. On PostgreSQL ``forward_review`` gains
that flag and applies ``store.review_outcome`` (the rule the station's own store applied):
reviewers who disagree leave the central part ``conflict`` until a settling label, where 0013's
function let the last forwarded label win. A review older than the part's latest label is kept
in the audit trail only, as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from inspection.core.certificate import CONFIRMED_GOOD
from inspection.store.models import REVIEW_CONFLICT, REVIEW_LABELS

revision = "0019"
down_revision = "0018"

_ARGS = "local_id bigint, inspection text, label text, defect_type text, reviewer text, note text"
_OLD = "forward_review(bigint, text, text, text, text, text, timestamptz)"
_LABELS = ", ".join(f"'{label}'" for label in REVIEW_LABELS)
_GOOD = ", ".join(f"'{label}'" for label in CONFIRMED_GOOD)
_DEFINER = "LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp"


def _forward_review(decide: str, settles_arg: str) -> str:
    """``forward_review``: checks, the audit-trail row, then ``decide`` on the part."""
    return f"""
CREATE FUNCTION forward_review({_ARGS}, made_at timestamptz{settles_arg}) RETURNS boolean
{_DEFINER} AS $$
DECLARE
    station text;
    current text;
    current_by text;
    current_at timestamptz;
    outcome text;
BEGIN
    IF label NOT IN ({_LABELS}) THEN
        RAISE EXCEPTION 'review label % is not one of {", ".join(REVIEW_LABELS)}', label
            USING ERRCODE = 'check_violation';
    END IF;
    SELECT i.station_id, i.review_label, i.reviewed_by, i.reviewed_at
        INTO station, current, current_by, current_at
        FROM inspections i WHERE i.id = inspection FOR UPDATE;
    IF station IS NULL THEN
        RAISE EXCEPTION 'no central result %: its review waits for it', inspection
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = station
                   AND pg_has_role(session_user, r.oid, 'MEMBER')) THEN
        RAISE EXCEPTION 'result % is station %''s: role % may not review it',
            inspection, station, session_user USING ERRCODE = 'check_violation';
    END IF;
    {decide}
END $$"""


_RECORD = """INSERT INTO reviews (inspection_id, label, defect_type, reviewer, note, created_at,
        origin{settles_column})
    VALUES (inspection, label, defect_type, reviewer, note, made_at,
        session_user || '/' || local_id{settles_value})
    ON CONFLICT (origin) DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;"""
_OUTCOME = f"""{_RECORD.format(settles_column=", settles", settles_value=", settles")}
    IF current_at IS NOT NULL AND current_at > made_at THEN
        RETURN true;
    END IF;
    outcome := CASE
        WHEN settles OR current IS NULL THEN label
        WHEN current = '{REVIEW_CONFLICT}' THEN '{REVIEW_CONFLICT}'
        WHEN current_by = reviewer OR current = 'unsure' OR current = label
            OR (current IN ({_GOOD}) AND label IN ({_GOOD})) THEN label
        ELSE '{REVIEW_CONFLICT}'
    END;
    UPDATE inspections i SET review_label = outcome, reviewed_by = reviewer,
        reviewed_at = made_at,
        review_defect_type = CASE WHEN outcome = label THEN defect_type
                                  ELSE i.review_defect_type END
    WHERE i.id = inspection;
    RETURN true;"""
_LATEST_WINS = f"""{_RECORD.format(settles_column="", settles_value="")}
    UPDATE inspections i SET review_label = label, review_defect_type = defect_type,
        reviewed_by = reviewer, reviewed_at = made_at
    WHERE i.id = inspection AND (i.reviewed_at IS NULL OR i.reviewed_at <= made_at);
    RETURN true;"""


def upgrade() -> None:
    op.add_column(
        "reviews", sa.Column("settles", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION {_OLD}")
        op.execute(_forward_review(_OUTCOME, ", settles boolean"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION {_OLD[:-1]}, boolean)")
        op.execute(_forward_review(_LATEST_WINS, ""))
    op.drop_column("reviews", "settles")
