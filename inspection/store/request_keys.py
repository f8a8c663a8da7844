"""One result per request id on a partitioned PostgreSQL results table (migration 0016).

A partitioned table is unique by (request id, created_at) only, so a re-imaged line PC whose ids
start over would put two rows under one id. ``request_keys`` (not partitioned) holds each id
once; a ``BEFORE INSERT`` trigger claims it, and a row whose id another result holds is kept as
``<request id>#<first 12 of its id>``: never dropped, never ambiguous. Deleting a row releases
its key (``release`` for a dropped month). SQLite's table is unique by request id itself.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, text

CLASH = "#"
"""Separates a request id from the id prefix of the later result that sent it again."""
TABLE_SQL = """
CREATE TABLE request_keys (
    request_id varchar(160) PRIMARY KEY,
    inspection_id varchar(32) NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX ix_request_keys_created ON request_keys (created_at);
REVOKE ALL ON request_keys FROM PUBLIC
"""
TRIGGER_SQL = f"""
CREATE OR REPLACE FUNCTION inspections_request_key() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    held text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM public.request_keys k
        WHERE k.request_id = OLD.request_id AND k.inspection_id = OLD.id;
        RETURN OLD;
    END IF;
    IF NEW.request_id IS NULL THEN
        RETURN NEW;
    END IF;
    LOOP
        INSERT INTO public.request_keys VALUES (NEW.request_id, NEW.id, NEW.created_at)
        ON CONFLICT (request_id) DO NOTHING;
        IF FOUND THEN
            RETURN NEW;
        END IF;
        SELECT k.inspection_id INTO held FROM public.request_keys k
        WHERE k.request_id = NEW.request_id;
        IF held = NEW.id THEN
            RETURN NEW;  -- the same result sent again: the primary key leaves it out
        END IF;
        IF position('{CLASH}' IN NEW.request_id) > 0 THEN
            RAISE EXCEPTION 'request key % is held by result %', NEW.request_id, held
                USING ERRCODE = 'unique_violation';
        END IF;
        NEW.request_id := left(NEW.request_id, 147) || '{CLASH}' || left(NEW.id, 12);
    END LOOP;
END $$;
REVOKE ALL ON FUNCTION inspections_request_key() FROM PUBLIC;
DROP TRIGGER IF EXISTS inspections_request_key ON inspections;
CREATE TRIGGER inspections_request_key BEFORE INSERT ON inspections
    FOR EACH ROW EXECUTE FUNCTION inspections_request_key();
DROP TRIGGER IF EXISTS inspections_request_key_gone ON inspections;
CREATE TRIGGER inspections_request_key_gone AFTER DELETE ON inspections
    FOR EACH ROW EXECUTE FUNCTION inspections_request_key()
"""
FILL_SQL = f"""
INSERT INTO request_keys
SELECT DISTINCT ON (request_id) request_id, id, created_at FROM inspections
WHERE request_id IS NOT NULL ORDER BY request_id, received_at NULLS FIRST, created_at, id;
UPDATE inspections i SET request_id = left(i.request_id, 147) || '{CLASH}' || left(i.id, 12)
WHERE i.request_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM request_keys k
    WHERE k.request_id = i.request_id AND k.inspection_id = i.id);
INSERT INTO request_keys SELECT request_id, id, created_at FROM inspections
WHERE request_id LIKE '%{CLASH}%' ON CONFLICT (request_id) DO NOTHING
"""
"""Claim the request ids of the rows already stored, the first received keeping its id."""
RECLAIM_SQL = (
    "INSERT INTO request_keys SELECT request_id, id, created_at FROM {table} "
    "WHERE request_id IS NOT NULL ON CONFLICT (request_id) DO NOTHING"
)
"""Claim again the keys of the rows a new month's partition took from the default one (their
move out of it, a delete, released them)."""


def install(connection: Connection) -> None:
    """Create ``request_keys``, fill it from the stored rows and add the triggers."""
    for sql in (TABLE_SQL, FILL_SQL, TRIGGER_SQL):
        connection.execute(text(sql))


def release(connection: Connection, start: datetime, end: datetime) -> None:
    """Forget the keys of the rows created in [``start``, ``end``) (a month retention drops
    whole: a dropped partition fires no delete trigger)."""
    connection.execute(
        text("DELETE FROM request_keys WHERE created_at >= :start AND created_at < :end"),
        {"start": start, "end": end},
    )
