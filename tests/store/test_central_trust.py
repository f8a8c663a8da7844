"""A central store that trusts no single station and no wire, against the test PostgreSQL
with TLS (``scripts/services.sh``): verified TLS only, hostile SQL from a station's own
connection refused, rollups kept by the central side, no password in what the server sees,
``--writes`` limited to the project's station ids."""

from __future__ import annotations

import logging
import os
import subprocess
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from alembic import command
from alembic.config import Config
from sqlalchemy.exc import DBAPIError, OperationalError
from typer.testing import CliRunner

from inspection.cli import app
from inspection.core.errors import ConfigError
from inspection.line.pki import LinePki
from inspection.store import rollups
from inspection.store.central_link import link_args
from inspection.store.central_roles import STATION_GROUP, STATION_IDS, grant_station
from inspection.store.forward import Forwarder
from inspection.store.models import OutboxMessage
from inspection.store.store import MIGRATIONS_DIR
from tests.conftest import PG_ADMIN_URL, PG_CA_FILE
from tests.store.test_forward import Central, _central_keys, _local, central

pytestmark = pytest.mark.postgres
__all__ = ["central"]
PG_LOG = Path("/var/log/postgresql/postgresql-15-inspection.log")  # scripts/services.sh's cluster


def test_a_plaintext_link_is_refused_unless_switched_on(
    central: Central, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bare = central.url.split("?")[0]
    with pytest.raises(ConfigError, match="no site CA"):
        link_args(bare, None)
    with pytest.raises(ConfigError, match="sslmode=require"):
        link_args(f"{bare}?sslmode=require", PG_CA_FILE)
    with pytest.raises(ConfigError, match="no such file"):
        link_args(bare, Path("/nonexistent/ca.pem"))
    with caplog.at_level(logging.WARNING, "inspection.store.central_link"):
        assert link_args(bare, None, allow_plaintext=True) == {}
    assert "NOT verified TLS" in caplog.text
    with pytest.raises(ConfigError, match="no site CA"):
        Forwarder(_local(tmp_path, central.station, 0), bare, central.blob_dir)


def test_only_the_site_ca_verifies_the_server(central: Central, tmp_path: Path) -> None:
    bare = central.url.split("?")[0]
    right = sa.create_engine(bare, connect_args=link_args(bare, PG_CA_FILE))
    with right.connect() as connection:
        assert connection.scalar(
            sa.text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        )
    right.dispose()
    other_ca = LinePki(tmp_path / "other-pki").ca_file  # a CA that did not sign the server
    wrong = sa.create_engine(bare, connect_args=link_args(bare, other_ca))
    with pytest.raises(OperationalError, match="certificate verify failed"):
        wrong.connect()
    wrong.dispose()


def _station(central: Central) -> sa.Engine:
    """The station's own connection; not pooled: a ``SET ROLE`` must not outlive its test."""
    return sa.create_engine(central.url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)


def _other_rows(central: Central, other: str) -> None:
    central.store.add_inspection(  # another station's result and report, written centrally
        product="brick", station_id=other, score=0.9, threshold=0.5, verdict="NG",
        model_version="m", bundle_id="b", latency_ms=1.0, width=8, height=8, image_sha="a" * 64,
    )  # fmt: skip
    with central.store.engine.begin() as owner:
        owner.execute(
            sa.text("INSERT INTO station_backlog VALUES (:s, 7, 70, 9.0, 0.5, 300, now())"),
            {"s": other},
        )


_ROW = (
    "INSERT INTO inspections (id, product, station_id, source, score, threshold, verdict, "
    "model_version, bundle_id, latency_ms, mask_source, regions, width, height, image_sha, "
    "created_at) VALUES (md5(random()::text), 'brick', {who}, 'api', 0.1, 0.5, 'OK', 'm', "
    "'b', 1, 'raw', '[]', 8, 8, 'x', now())"
)
_KEYED = _ROW.replace("image_sha, ", "image_sha, request_id, ").replace(
    "'x', now()", "'x', {key}, now()"
)  # a row with a request key
DENIED, RLS, OWNER = "permission denied", "row-level security", "must be owner"
HOSTILE = {  # a station's own SQL, and why PostgreSQL refuses it
    "update another's result": ("UPDATE inspections SET verdict = 'OK'", DENIED),
    "delete results": ("DELETE FROM inspections", DENIED),
    "insert as another station": (_ROW.format(who="'{other}'"), RLS),
    "insert under another station's request id": (  # #92: B's role, A's next id
        _KEYED.format(who="current_user", key="'{other}/7'"),
        RLS,
    ),
    "insert as the group": ("SET ROLE inspection_station; " + _ROW.format(who="current_user"), RLS),
    "insert as a station id": (
        'SET ROLE "{station}-watch"; ' + _ROW.format(who="current_user"),
        DENIED,
    ),
    "set_config role": (
        "SELECT set_config('role', 'inspection_station', false); "
        + _ROW.format(who="'inspection_station'"),
        RLS,
    ),
    "become the owner": ("SET ROLE inspection", DENIED),
    "session authorization": (
        "SELECT set_config('session_authorization', 'inspection', false)",
        DENIED,
    ),
    "delete another's backlog": ("DELETE FROM station_backlog", DENIED),
    "truncate": ("TRUNCATE inspections", DENIED),
    "disable row security": ("ALTER TABLE inspections DISABLE ROW LEVEL SECURITY", OWNER),
    "drop a policy": ("DROP POLICY own_station ON inspections", OWNER),
    "row_security off": ("SET row_security = off; SELECT count(*) FROM inspections", RLS),
    "update rollups": ("UPDATE rollup_hourly SET total = 0", DENIED),
    "insert rollups": ("INSERT INTO rollup_scores VALUES (now(), 'brick', 0, 1000)", DENIED),
    "read rollups": ("SELECT * FROM rollup_scores", DENIED),
    "trojan in public": (
        "CREATE FUNCTION public.lower(text) RETURNS text AS 'SELECT $1' LANGUAGE sql",
        DENIED,
    ),
}


@pytest.mark.parametrize(("sql", "error"), HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_sql_from_a_station_connection_is_refused(
    central: Central, sql: str, error: str
) -> None:
    other = f"other-{uuid.uuid4().hex[:6]}"
    _other_rows(central, other)
    engine = _station(central)
    statement = sql.format(other=other, station=central.station)
    with pytest.raises(DBAPIError, match=error), engine.connect() as connection:
        for part in statement.split("; "):
            connection.execute(sa.text(part))
    with engine.connect() as connection:  # what it may do: only its own rows, seen and changed
        assert connection.scalar(sa.text("SELECT count(*) FROM inspections")) == 0
        changed = connection.execute(sa.text("UPDATE station_backlog SET backlog_rows = 0"))
        assert changed.rowcount == 0
    engine.dispose()
    with central.store.engine.connect() as owner:
        assert owner.execute(sa.text("SELECT verdict, station_id FROM inspections")).all() == [
            ("NG", other)
        ]
        assert owner.scalar(sa.text("SELECT backlog_rows FROM station_backlog")) == 7
        assert owner.scalar(sa.text("SELECT sum(count) FROM rollup_scores")) == 1
        assert owner.scalar(sa.text("SELECT sum(total) FROM rollup_hourly")) == 1


def test_the_central_store_keeps_the_rollups_of_forwarded_rows(
    central: Central, tmp_path: Path
) -> None:
    """The trigger's rollups equal a rebuild from the results; a batch sent again adds none."""
    local = _local(tmp_path, central.station, 30)
    forwarder = Forwarder(local, central.url, central.blob_dir, batch=7)
    assert forwarder.drain() == 30 and len(_central_keys(central)) == 30
    with local.session() as session:  # every batch sent again, as after a crash
        session.execute(sa.update(OutboxMessage).values(delivered_at=None))
    assert forwarder.drain() == 30 and len(_central_keys(central)) == 30
    forwarder.stop()
    with central.store.engine.begin() as owner:
        kept = _rollups(owner)
        rollups.rebuild(owner)
        assert kept == _rollups(owner)
    assert sum(row[3] for row in kept["rollup_hourly"]) == 30


def _rollups(owner: sa.Connection) -> dict[str, list[tuple[object, ...]]]:
    """Both rollup tables, float sums to 9 places (summed in another order)."""
    tables = ("rollup_hourly", "rollup_scores")
    return {
        table: [
            tuple(round(value, 9) if isinstance(value, float) else value for value in row)
            for row in owner.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1, 2, 3"))
        ]
        for table in tables
    }


def test_the_password_is_never_sent_as_text(central: Central) -> None:
    sent: list[str] = []
    sa.event.listen(central.store.engine, "before_cursor_execute", lambda *a: sent.append(a[2]))
    station = f"line-{uuid.uuid4().hex[:8]}"
    password = grant_station(central.store, station)
    assert not [statement for statement in sent if password in statement]
    assert any(f'ALTER ROLE "{station}" LOGIN PASSWORD \'SCRAM-SHA-256$' in s for s in sent)
    url = sa.make_url(central.url).set(username=station, password=password)
    engine = sa.create_engine(url)
    with engine.connect() as connection:  # the verifier is the password's
        assert connection.scalar(sa.text("SELECT current_user")) == station
    engine.dispose()
    _drop_roles(central, station)


@pytest.mark.skipif(
    os.geteuid() != 0 or not PG_LOG.exists(), reason="sets log_statement as postgres (root)"
)
def test_the_password_is_not_in_the_server_log(central: Central) -> None:
    database = central.store.engine.url.database
    _as_postgres(f"ALTER DATABASE \"{database}\" SET log_statement = 'all'")
    central.store.engine.dispose()  # new sessions log every statement
    start = PG_LOG.stat().st_size
    station = f"line-{uuid.uuid4().hex[:8]}"
    password = grant_station(central.store, station)
    with PG_LOG.open(encoding="utf-8", errors="replace") as log:
        log.seek(start)
        written = log.read()
    assert f'ALTER ROLE "{station}" LOGIN PASSWORD \'SCRAM-SHA-256$' in written
    assert password not in written
    _drop_roles(central, station)


def _as_postgres(sql: str) -> None:
    port = str(sa.engine.make_url(PG_ADMIN_URL).port)
    subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-p", port, "-qc", sql], check=True)


def _drop_roles(central: Central, *roles: str) -> None:
    with central.store.engine.begin() as owner:
        for role in roles:
            owner.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))


FOREIGN = {
    "the owner": ("line-x", ("inspection",), "not one of this project's station ids"),
    "a built-in role": ("line-x", ("pg_read_all_data",), "not pg_"),
    "the station group": ("line-x", (STATION_GROUP,), "not inspection_station"),
    "the id group": ("line-x", (STATION_IDS,), "not inspection_station"),
    "a station that is the owner": ("inspection", (), "is not a station's"),
}


@pytest.mark.parametrize(("station", "writes", "error"), FOREIGN.values(), ids=FOREIGN.keys())
def test_writes_grants_only_the_projects_station_ids(
    central: Central, station: str, writes: tuple[str, ...], error: str
) -> None:
    with pytest.raises(ConfigError, match=error):
        grant_station(central.store, station, writes)
    with central.store.engine.connect() as owner:
        granted = owner.scalar(sa.text("SELECT count(*) FROM pg_roles WHERE rolname = 'line-x'"))
    assert granted == 0


def test_the_command_refuses_writes_into_a_foreign_role(central: Central, tmp_path: Path) -> None:
    owner = tmp_path / "central.yaml"
    core = {"products": ["brick"], "registry_dir": str(tmp_path), "store_url": central.store.url}
    owner.write_text(yaml.safe_dump({"core": core | {"allow_unsigned_bundles": True}}))
    command = ["db", "station-role", "line-x", "--writes", "inspection", "-c", str(owner)]
    result = CliRunner().invoke(app, command)
    assert result.exit_code != 0 and isinstance(result.exception, ConfigError)
    assert "--writes 'inspection': an existing role that is not one of this project's" in str(
        result.exception
    )


def test_migration_0012_confines_the_roles_an_earlier_release_made(central: Central) -> None:
    """Down to 0011 (the earlier grants: rollups writable, ids outside the id group), then up:
    the rollups are closed and the earlier ``--writes`` id still counts as the station's."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    watch = f"{central.station}-watch"
    with central.store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0011")
        connection.execute(sa.text(f'REVOKE {STATION_IDS} FROM "{watch}"'))
    engine = _station(central)
    with engine.connect() as connection:
        connection.execute(sa.text("UPDATE rollup_hourly SET total = 0"))  # allowed before
    central.store.migrate()
    with pytest.raises(DBAPIError, match=DENIED), engine.connect() as connection:
        connection.execute(sa.text("UPDATE rollup_hourly SET total = 0"))
    with engine.connect() as connection:
        connection.execute(sa.text(_ROW.format(who=f"'{watch}'")))
    engine.dispose()
