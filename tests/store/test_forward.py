"""Store and forward against a real PostgreSQL: outage, drain in order, idempotency, kill -9,
and row-level security of a station's own role."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.exc import DBAPIError, OperationalError
from typer.testing import CliRunner

from inspection.cli import app
from inspection.store.central_roles import STATION_GROUP, grant_station
from inspection.store.forward import Forwarder, backlog, central_entry, quarantined
from inspection.store.rollups import HourlyRollup
from inspection.store.store import Store
from tests.conftest import (
    PG_ADMIN_URL,
    PG_CA_FILE,
    _drop_postgres_database,
    _fresh_postgres_database,
    verified,
)

pytestmark = pytest.mark.postgres
DOWN_URL = "postgresql+psycopg://nobody:pw@127.0.0.1:1/central"
TERMINATE_OWN = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE usename = current_user AND pid <> pg_backend_pid()"
)


@dataclass
class Central:
    store: Store
    """The central store as its owner (what the dashboard reads)."""
    station: str
    url: str
    """The central store as the station's own role."""
    blob_dir: Path


@pytest.fixture
def central(tmp_path: Path, postgres_template: str) -> Iterator[Central]:
    url, name = _fresh_postgres_database(postgres_template)
    store = Store.migrated(url, tmp_path / "central-blobs")
    station = f"line-{uuid.uuid4().hex[:8]}"
    password = grant_station(store, station, writes=(f"{station}-watch",))
    station_url = verified(url.replace("inspection:inspection@", f"{station}:{password}@"))
    made = Central(store, station, station_url, tmp_path / "central-blobs")
    yield made
    store.engine.dispose()
    own = sa.create_engine(made.url)  # the owner may not end a station's sessions: a
    with own.connect() as connection:  # connection cut mid-batch may still be closing
        connection.execute(sa.text(TERMINATE_OWN))
    own.dispose()
    _drop_postgres_database(name)
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        for role in (station, f"{station}-watch"):
            connection.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
    admin.dispose()


def _local(tmp_path: Path, station: str, parts: int, start: int = 0) -> Store:
    """A station's local SQLite store holding ``parts`` results waiting for the central one."""
    store = Store.migrated(f"sqlite:///{tmp_path / 'local.db'}", tmp_path / "blobs")
    for i in range(start, start + parts):
        image = f"image {i}".encode()
        key = f"{station}/r{i:04d}"
        store.add_inspection(
            outbox=[central_entry(key, len(image))],
            request_id=key,
            product="brick",
            station_id=station,
            score=0.7,
            threshold=0.5,
            verdict="NG",
            model_version="brick/v0001",
            bundle_id="v0001",
            latency_ms=10.0,
            width=8,
            height=8,
            image_sha=store.blobs.put(image, ".png"),
        )
    return store


def _central_keys(central: Central) -> list[str]:
    with central.store.session() as session:
        return list(session.scalars(sa.text("SELECT request_id FROM inspections ORDER BY 1")))


def _rollup_total(central: Central) -> int:
    with central.store.session() as session:
        return session.scalar(sa.select(sa.func.coalesce(sa.func.sum(HourlyRollup.total), 0)))


def test_central_down_keeps_results_local_then_drains_in_order(
    central: Central, tmp_path: Path
) -> None:
    local = _local(tmp_path, central.station, 5)
    down = Forwarder(local, verified(DOWN_URL), central.blob_dir)
    with pytest.raises(OperationalError):
        down.forward_once()
    waiting = backlog(local)
    assert (waiting.rows, waiting.bytes) == (5, sum(len(f"image {i}") for i in range(5)))
    assert waiting.oldest_age_s is not None and waiting.oldest_age_s >= 0
    assert waiting.alarm(after_s=3600) is False and waiting.alarm(after_s=-1) is True

    forwarder = Forwarder(local, central.url, central.blob_dir, batch=2)
    assert forwarder.forward_once() == 2
    keys = [f"{central.station}/r{i:04d}" for i in range(5)]
    assert _central_keys(central) == keys[:2]  # oldest first
    assert forwarder.drain() == 3
    assert _central_keys(central) == keys
    assert _rollup_total(central) == 5
    for row in local.list_inspections():
        assert central.store.blobs.get(row.image_sha) == local.blobs.get(row.image_sha)
    done = backlog(local)
    assert (done.rows, done.bytes, done.oldest_age_s) == (0, 0, None)
    assert done.rate_per_s == pytest.approx(5 / 60)
    forwarder.stop()


def test_a_batch_forwarded_again_inserts_and_counts_nothing_twice(
    central: Central, tmp_path: Path
) -> None:
    """A crash between the central commit and the local mark forwards the batch again."""
    local = _local(tmp_path, central.station, 4)
    forwarder = Forwarder(local, central.url, central.blob_dir)
    assert forwarder.drain() == 4
    with local.session() as session:  # as if the marks never committed
        session.execute(sa.text("UPDATE outbox_messages SET delivered_at = NULL"))
    assert backlog(local).rows == 4
    assert forwarder.drain() == 4
    assert len(_central_keys(central)) == 4
    assert _rollup_total(central) == 4
    assert backlog(local).rows == 0
    forwarder.stop()


_KILLED_FORWARDER = """
import sys
from pathlib import Path
from typer.testing import CliRunner

from inspection.cli import app
from inspection.store.forward import Forwarder
from inspection.store.store import Store
local = Store(sys.argv[1], sys.argv[2])
forwarder = Forwarder(local, sys.argv[3], Path(sys.argv[4]), batch=5)
forwarder.forward_once()
print("forwarding", flush=True)
forwarder.drain()
"""


def test_kill_9_mid_backlog_loses_and_doubles_nothing(central: Central, tmp_path: Path) -> None:
    local = _local(tmp_path, central.station, 400)
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_FORWARDER, local.url, str(tmp_path / "blobs"),
         central.url, str(central.blob_dir)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert child.stdout is not None and child.stdout.readline() == "forwarding\n"
    time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    left = backlog(local).rows
    assert 0 < left < 400, "the kill must land mid-backlog"
    forwarder = Forwarder(local, central.url, central.blob_dir)
    assert forwarder.drain() == left
    keys = _central_keys(central)
    assert keys == sorted({f"{central.station}/r{i:04d}" for i in range(400)})
    assert _rollup_total(central) == 400
    forwarder.stop()


def test_a_station_role_writes_and_reads_only_its_own_rows(
    central: Central, tmp_path: Path
) -> None:
    other = f"other-{uuid.uuid4().hex[:6]}"
    central.store.add_inspection(  # a row of another station, written centrally
        product="brick", station_id=other, score=0.1, threshold=0.5, verdict="OK",
        model_version="m", bundle_id="b", latency_ms=1.0, width=8, height=8, image_sha="a" * 64,
    )  # fmt: skip
    mine = _local(tmp_path / "mine", f"{central.station}-watch", 2)  # a station id it was given
    forwarder = Forwarder(mine, central.url, central.blob_dir)
    assert forwarder.drain() == 2
    with forwarder.engine.connect() as connection:  # the other station's row is invisible
        stations = connection.scalars(sa.text("SELECT DISTINCT station_id FROM inspections"))
        assert list(stations) == [f"{central.station}-watch"]
    forwarder.stop()

    intruder = _local(tmp_path / "intruder", other, 1)
    forwarder = Forwarder(intruder, central.url, central.blob_dir)
    assert forwarder.forward_once() == 1  # refused: set aside, not retried for ever
    assert (backlog(intruder).rows, backlog(intruder).quarantined) == (0, 1)
    assert "row-level security" in (quarantined(intruder)[0][2] or "")
    assert len(_central_keys(central)) == 3  # the other station's own row and the two
    forwarder.stop()


def test_the_documented_commands_rekey_the_role_and_drain(central: Central, tmp_path: Path) -> None:
    """``inspection db station-role`` (as the owner), then ``inspection station forward``."""
    owner = tmp_path / "central.yaml"
    local = _local(tmp_path, central.station, 3)
    core = {"products": ["brick"], "registry_dir": str(tmp_path), "allow_unsigned_bundles": True}
    owner.write_text(yaml.safe_dump({"core": core | {"store_url": central.store.url}}))
    result = CliRunner().invoke(app, ["db", "station-role", central.station, "-c", str(owner)])
    assert result.exit_code == 0, result.output
    password = result.output.splitlines()[1]
    url = central.store.engine.url.set(username=central.station, password=password)
    central.url = verified(url.render_as_string(False))  # re-keyed
    station = tmp_path / "station.yaml"
    core |= {"store_url": local.url, "blob_dir": str(tmp_path / "blobs")}
    core["central"] = {
        "url": url.render_as_string(False),
        "blob_dir": str(central.blob_dir),
        "ca_file": str(PG_CA_FILE),
    }
    station.write_text(yaml.safe_dump({"core": core}))
    result = CliRunner().invoke(app, ["station", "forward", "-c", str(station), "--drain"])
    assert result.exit_code == 0, result.output
    assert "forwarded 3 results" in result.output and "central backlog: 0 results" in result.output
    assert len(_central_keys(central)) == 3


def start_batch(forwarder: Forwarder) -> tuple[threading.Thread, list[BaseException]]:
    """A started thread forwarding one batch, and the list it puts its ``OperationalError`` in
    (the central side killed under it)."""
    failed: list[BaseException] = []

    def forward() -> None:
        try:
            forwarder.forward_once()
        except OperationalError as exc:
            failed.append(exc)

    worker = threading.Thread(target=forward)
    worker.start()
    return worker, failed


def test_the_central_side_killed_mid_batch_loses_and_doubles_nothing(
    central: Central, tmp_path: Path
) -> None:
    """The forwarder's central session dies inside its batch transaction (as when PostgreSQL
    is killed): nothing of the batch is kept centrally or marked locally; the next try sends it."""
    local = _local(tmp_path, central.station, 6)
    forwarder = Forwarder(local, central.url, central.blob_dir, batch=6)
    with central.store.engine.connect() as locker:  # the batch's INSERT waits on this lock
        locker.execute(sa.text("LOCK TABLE inspections IN ACCESS EXCLUSIVE MODE"))
        worker, failed = start_batch(forwarder)
        time.sleep(0.5)
        with forwarder.engine.connect() as own:  # a role may end its own sessions
            own.execute(sa.text(TERMINATE_OWN))
        worker.join(timeout=30)
        locker.rollback()
    assert len(failed) == 1
    assert backlog(local).rows == 6 and _central_keys(central) == []
    assert forwarder.drain() == 6
    assert len(_central_keys(central)) == 6 and _rollup_total(central) == 6
    forwarder.stop()


def test_a_connection_lost_while_the_role_is_learned_is_learned_again(
    central: Central, tmp_path: Path
) -> None:
    """The station's connection ended (as a restarting central side ends it) right after the
    columns are read and before its role is: the next batch learns both again, so a station is
    not taken for the owner, whose rollup writes its role may not make (every row refused)."""
    local = _local(tmp_path, central.station, 3)
    forwarder = Forwarder(local, central.url, central.blob_dir)
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    cut: list[int] = []

    def end_before_the_role_query(connection, cursor, statement, *_: object) -> None:
        if "pg_has_role" in statement and not cut:
            cut.append(connection.connection.dbapi_connection.info.backend_pid)
            with admin.connect() as own:  # waits until the backend has ended
                own.execute(sa.text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": cut[0]})

    sa.event.listen(forwarder.engine, "before_cursor_execute", end_before_the_role_query)
    with pytest.raises(OperationalError):
        forwarder.forward_once()
    assert cut and backlog(local).rows == 3
    assert forwarder.drain() == 3
    assert backlog(local).quarantined == 0 and len(_central_keys(central)) == 3
    assert _rollup_total(central) == 3
    forwarder.stop()
    admin.dispose()


def _reports(central: Central) -> dict[str, sa.Row]:
    with central.store.session() as session:
        rows = session.execute(sa.text("SELECT * FROM station_backlog")).all()
    return {row.station_id: row for row in rows}


def test_the_forwarder_reports_its_backlog_row_and_updates_it(
    central: Central, tmp_path: Path
) -> None:
    local = _local(tmp_path, central.station, 3)
    forwarder = Forwarder(local, central.url, central.blob_dir, batch=2, alarm_after_s=60)
    assert forwarder.report() is True
    first = _reports(central)[central.station]  # keyed by the station's own role
    assert (first.backlog_rows, first.backlog_bytes) == (
        3,
        sum(len(f"image {i}") for i in range(3)),
    )
    assert first.oldest_age_s >= 0 and first.rate_per_s == 0 and first.alarm_after_s == 60
    assert forwarder.forward_once() == 2 and forwarder.report() is True
    second = _reports(central)[central.station]
    assert (second.backlog_rows, second.backlog_bytes) == (1, len("image 2"))
    assert second.rate_per_s == pytest.approx(2 / 60) and second.reported_at > first.reported_at
    assert forwarder.drain() == 1  # drain reports at its end
    done = _reports(central)
    assert list(done) == [central.station]  # one row per station, updated in place
    assert (done[central.station].backlog_rows, done[central.station].oldest_age_s) == (0, None)
    forwarder.stop()


def test_the_running_forwarder_reports_when_nothing_waits(central: Central, tmp_path: Path) -> None:
    local = _local(tmp_path, central.station, 0)
    forwarder = Forwarder(local, central.url, central.blob_dir)
    forwarder.start()
    try:
        deadline = time.monotonic() + 10
        while central.station not in _reports(central) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        forwarder.stop()
    row = _reports(central)[central.station]
    assert (row.backlog_rows, row.backlog_bytes, row.oldest_age_s) == (0, 0, None)


def test_a_station_role_writes_only_its_own_backlog_row(central: Central) -> None:
    other = f"other-{uuid.uuid4().hex[:6]}"
    with central.store.engine.begin() as owner:  # another station's report
        owner.execute(
            sa.text("INSERT INTO station_backlog VALUES (:s, 7, 70, 9.0, 0.5, 300, now())"),
            {"s": other},
        )
    engine = sa.create_engine(central.url)
    with engine.begin() as connection:  # its own row: allowed, and the other stays unseen
        connection.execute(
            sa.text("INSERT INTO station_backlog VALUES (current_user, 0, 0, NULL, 0, NULL, now())")
        )
        seen = connection.scalars(sa.text("SELECT station_id FROM station_backlog"))
        assert list(seen) == [central.station]
        changed = connection.execute(
            sa.text("UPDATE station_backlog SET backlog_rows = 0 WHERE station_id = :s"),
            {"s": other},
        )
        assert changed.rowcount == 0
    with pytest.raises(DBAPIError, match="row-level security"), engine.begin() as connection:
        connection.execute(
            sa.text("INSERT INTO station_backlog VALUES (:s, 0, 0, NULL, 0, NULL, now())"),
            {"s": other},
        )
    engine.dispose()
    assert _reports(central)[other].backlog_rows == 7


def test_a_refused_report_leaves_forwarding_alone(central: Central, tmp_path: Path) -> None:
    """A station role granted before ``station_backlog`` existed (a rolling upgrade)."""
    with central.store.engine.begin() as owner:
        owner.execute(sa.text(f"REVOKE ALL ON station_backlog FROM {STATION_GROUP}"))
    local = _local(tmp_path, central.station, 2)
    forwarder = Forwarder(local, central.url, central.blob_dir)
    assert forwarder.report() is False
    assert forwarder.drain() == 2 and len(_central_keys(central)) == 2
    assert _reports(central) == {}
    forwarder.stop()
