"""Nothing lost, nothing stalled on the way to the central store (real PostgreSQL over
verified TLS, a station's own role): refusals of any class set aside, request ids that start
over kept under a distinct key, definers that ignore ``pg_temp``, rollups per station, blobs
hashed wherever they are copied."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from inspection.core.errors import ConfigError
from inspection.line.pki import LinePki
from inspection.store import partitions, queries
from inspection.store.blobs import BlobStore
from inspection.store.forward import Forwarder, backlog, quarantined
from inspection.store.models import Inspection, OutboxMessage
from inspection.store.store import Store, StoreUnavailable
from tests.conftest import PG_CA_FILE
from tests.store import test_forward
from tests.store.test_forward import Central, _local

pytestmark = pytest.mark.postgres
central = test_forward.central


def test_rows_its_role_may_not_write_are_set_aside_and_the_rest_flows(
    central: Central, tmp_path: Path
) -> None:
    """A station whose configured id differs from its role's name: row-level security
    (SQLSTATE 42501) refuses those rows; they wait aside, alarmed, and its own rows flow."""
    local = _local(tmp_path, "probe1", 3)  # the token's name, not the role's
    _local(tmp_path, central.station, 4, start=3)
    forwarder = Forwarder(local, central.url, central.blob_dir, batch=5)
    assert forwarder.drain() == 7
    forwarder.stop()
    own = [f"{central.station}/r{i:04d}" for i in range(3, 7)]
    assert test_forward._central_keys(central) == own
    waiting = backlog(local)
    assert (waiting.rows, waiting.quarantined) == (0, 3) and waiting.alarm(after_s=3600)
    reasons = [error or "" for _, _, error in quarantined(local)]
    assert len(reasons) == 3 and all("row-level security" in r for r in reasons)


def test_a_reimaged_line_pc_whose_ids_start_over_loses_nothing(
    central: Central, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = _local(tmp_path / "before", central.station, 5)
    assert Forwarder(first, central.url, central.blob_dir).drain() == 5
    again = _local(tmp_path / "after", central.station, 5)  # fresh store, same ids
    forwarder = Forwarder(again, central.url, central.blob_dir)
    assert forwarder.drain() == 5 and forwarder.clashes == 5
    clashes = [r for r in caplog.records if "central store" in r.getMessage()]
    assert len(clashes) == 5 and all("ids started over" in r.getMessage() for r in clashes)
    assert not any("squatter" in r.getMessage() for r in clashes)
    with again.session() as session:  # a crash before the mark: the batch is sent again
        session.execute(sa.update(OutboxMessage).values(delivered_at=None))
    assert forwarder.drain() == 5 and forwarder.clashes == 5
    forwarder.stop()

    ids = [row.id for store in (first, again) for row in store.list_inspections()]
    with central.store.session() as session:
        rows = {row.id: row for row in session.scalars(sa.select(Inspection))}
    assert sorted(rows) == sorted(ids)  # 10 rows: 0 lost, 0 duplicated
    for i in range(5):
        key = f"{central.station}/r{i:04d}"
        held = central.store.find_by_request_id(key)
        assert held is not None and held.id in {r.id for r in first.list_inspections()}
        [later] = [r for r in again.list_inspections() if r.request_id == key]
        assert rows[later.id].request_id == f"{key}#{later.id[:12]}"
        assert central.store.find_by_request_id(rows[later.id].request_id).id == later.id
    with central.store.session() as session:
        counts = session.execute(sa.text("SELECT count(*) FROM inspections GROUP BY request_id"))
        assert {n for (n,) in counts} == {1}


def test_a_squatters_row_under_a_stations_next_id_is_named_as_such(
    central: Central, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """#92: a row of another station under this station's next request id (stored before the
    key's station prefix was checked, or by an unscoped link): the station's own row is kept
    under a distinct key, and the clash is an error naming a squatter, not a re-imaged PC."""
    key = f"{central.station}/r0000"
    squatter = central.store.add_inspection(
        request_id=key, product="brick", station_id="line-other", score=0.1, threshold=0.5,
        verdict="OK", model_version="brick/v0001", bundle_id="v0001", latency_ms=1.0, width=8,
        height=8, image_sha=central.store.blobs.put(b"squatter", ".png"),
    )  # fmt: skip
    local = _local(tmp_path, central.station, 1)
    forwarder = Forwarder(local, central.url, central.blob_dir)
    assert forwarder.drain() == 1 and forwarder.clashes == 1
    forwarder.stop()
    [own] = local.list_inspections()
    assert central.store.find_by_request_id(key).id == squatter.id
    assert central.store.find_by_request_id(f"{key}#{own.id[:12]}").id == own.id  # 0 lost
    [clash] = [r for r in caplog.records if key in r.getMessage()]
    assert clash.levelname == "ERROR" and "a squatter" in clash.getMessage()
    assert "a row this station's role cannot see" in clash.getMessage()
    assert "started over" not in clash.getMessage()


def test_a_station_cannot_shadow_the_definers_tables_with_temporary_ones(
    central: Central,
) -> None:
    station = sa.create_engine(central.url)
    with pytest.raises(sa.exc.DBAPIError, match="temporary tables"), station.begin() as c:
        c.execute(sa.text("CREATE TEMP TABLE inspections (id text, station_id text)"))
    station.dispose()
    with central.store.session() as session:
        paths = session.scalars(
            sa.text(
                "SELECT p.proname || ': ' || array_to_string(p.proconfig, ',') FROM pg_proc p "
                "WHERE p.prosecdef AND p.pronamespace = 'public'::regnamespace"
            )
        ).all()
    assert len(paths) >= 4
    assert all(path.endswith("search_path=pg_catalog, public, pg_temp") for path in paths), paths


def test_score_rollups_are_kept_per_station(central: Central, tmp_path: Path) -> None:
    mine = _local(tmp_path / "mine", central.station, 3)
    other = _local(tmp_path / "other", f"{central.station}-watch", 2)
    with other.session() as session:  # another station scoring low
        session.execute(sa.update(Inspection).values(score=0.05))
    for local in (mine, other):
        Forwarder(local, central.url, central.blob_dir).drain()
    histogram = queries.score_histogram(central.store, "brick", bins=10, station_id=central.station)
    assert histogram.tolist() == [0] * 7 + [3, 0, 0]
    everyone = queries.score_histogram(central.store, "brick", bins=10)
    assert everyone.tolist() == [2] + [0] * 6 + [3, 0, 0]


def test_blobs_are_hashed_wherever_they_are_copied(central: Central, tmp_path: Path) -> None:
    """A decoy ``<sha>.bin`` beside the central ``<sha>.png`` neither stops the upload nor
    hides the blob; a local blob altered after its inspection sets its row aside."""
    local = _local(tmp_path, central.station, 2)
    first, second = local.list_inspections()[::-1]
    decoy = BlobStore(central.blob_dir)
    (central.blob_dir / first.image_sha[:2]).mkdir(parents=True)
    (central.blob_dir / first.image_sha[:2] / f"{first.image_sha}.bin").write_bytes(b"decoy")
    tampered = local.blobs.path(second.image_sha)
    tampered.chmod(0o644)
    tampered.write_bytes(b"altered")
    forwarder = Forwarder(local, central.url, central.blob_dir)
    assert forwarder.drain() == 2
    forwarder.stop()
    assert decoy.get(first.image_sha) == b"image 0"
    assert [key for _, key, _ in quarantined(local)] == [second.request_id]
    assert "do not hash to its name" in (quarantined(local)[0][2] or "")


def test_every_store_engine_verifies_the_server(central: Central, tmp_path: Path) -> None:
    """The owner's and the dashboard's engines (``store.make_engine``) go through the same
    verify-full helper as the forwarder."""
    owner = central.store.url.split("?")[0]
    with pytest.raises(ConfigError, match="no site CA"):
        Store(owner, tmp_path / "b")
    with pytest.raises(ConfigError, match="sslmode=prefer"):
        Store(f"{owner}?sslmode=prefer&sslrootcert={PG_CA_FILE}", tmp_path / "b")
    other_ca = LinePki(tmp_path / "other-pki").ca_file  # a CA that did not sign the server
    with pytest.raises(StoreUnavailable, match="certificate verify failed"):
        Store(f"{owner}?sslrootcert={other_ca}", tmp_path / "b").schema_revision()
    with Store(f"{owner}?sslrootcert={PG_CA_FILE}", tmp_path / "b").engine.connect() as c:
        assert c.scalar(sa.text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"))


def test_rows_moved_out_of_the_default_partition_keep_their_request_keys(
    central: Central,
) -> None:
    later = datetime.now(timezone.utc) + timedelta(days=200)  # past the months made ahead
    row = central.store.add_inspection(
        request_id="far/1", product="brick", station_id="far", score=0.5, threshold=0.5,
        verdict="OK", model_version="m", bundle_id="b", latency_ms=1.0, width=8, height=8,
        image_sha="a" * 64, created_at=later,
    )  # fmt: skip
    made, failed = partitions.upkeep(central.store.engine, later)
    assert made and not failed  # its month now holds the row, moved out of the default
    with central.store.session() as session:
        keys = session.execute(sa.text("SELECT request_id, inspection_id FROM request_keys"))
        assert list(keys) == [("far/1", row.id)]
