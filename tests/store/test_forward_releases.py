"""The mixed-release window: stations one release apart forward to one central store during a
rolling upgrade (docs/deployment.md, "Line PCs write locally and forward")."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from inspection.store.central_roles import grant_station
from inspection.store.forward import CentralBehind, Forwarder, backlog
from inspection.store.store import MIGRATIONS_DIR, schema_head
from tests.conftest import verified
from tests.store.test_forward import Central, _central_keys, _local, _rollup_total, central

pytestmark = pytest.mark.postgres
__all__ = ["central"]  # the fixture


def _owner(central: Central, sql: str) -> None:
    with central.store.engine.begin() as connection:
        connection.execute(sa.text(sql))


def test_a_station_one_release_ahead_forwards_to_the_central_store_before_its_upgrade(
    central: Central, tmp_path: Path
) -> None:
    """The central store one revision back (the real previous migration, downgraded): rows go
    through, the backlog report waits for the upgrade and the re-grant."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with central.store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "-1")
    assert central.store.schema_revision() != schema_head()
    local = _local(tmp_path, central.station, 3)
    forwarder = Forwarder(local, central.url, central.blob_dir)
    assert forwarder.drain() == 3 and len(_central_keys(central)) == 3
    central.store.migrate()  # `inspection db upgrade`, then `inspection db station-role`
    password = grant_station(central.store, central.station)
    forwarder.stop()
    url = central.store.engine.url.set(username=central.station, password=password)
    central.url = verified(url.render_as_string(False))
    forwarder = Forwarder(local, central.url, central.blob_dir)
    assert forwarder.report() is True
    forwarder.stop()


def test_a_station_one_release_ahead_holds_back_a_value_the_central_store_cannot_take(
    central: Central, tmp_path: Path
) -> None:
    """A column this release added and the central store has not yet (dropped here): rows
    without a value in it are forwarded; the first one with a value stops the backlog, in
    order, until the central store is upgraded (the column added back)."""
    column = "payload_digest"
    _owner(central, f"ALTER TABLE inspections DROP COLUMN {column}")
    local = _local(tmp_path, central.station, 2)
    with local.session() as session:
        session.execute(
            sa.text(f"UPDATE inspections SET {column} = 'ab' WHERE request_id LIKE '%1'")
        )
    forwarder = Forwarder(local, central.url, central.blob_dir, batch=1)
    assert forwarder.forward_once() == 1
    with pytest.raises(CentralBehind, match=f"no column {column} yet"):
        forwarder.forward_once()
    assert backlog(local).rows == 1 and len(_central_keys(central)) == 1
    _owner(central, f"ALTER TABLE inspections ADD COLUMN {column} varchar(64)")
    forwarder._columns = None  # as after any failure of ``run``
    assert forwarder.drain() == 1
    with central.store.session() as session:
        digests = session.scalars(sa.text(f"SELECT {column} FROM inspections ORDER BY request_id"))
        assert list(digests) == [None, "ab"]
    assert _rollup_total(central) == 2
    forwarder.stop()


def test_a_station_one_release_behind_leaves_a_newer_column_to_its_default(
    central: Central, tmp_path: Path
) -> None:
    """The central store already has a column this release does not know (the next one's
    additive migration): this release's row set inserts without it."""
    _owner(central, "ALTER TABLE inspections ADD COLUMN next_release text DEFAULT 'unset'")
    local = _local(tmp_path, central.station, 3)
    forwarder = Forwarder(local, central.url, central.blob_dir)
    assert forwarder.drain() == 3
    with central.store.session() as session:
        values = session.scalars(sa.text("SELECT DISTINCT next_release FROM inspections"))
        assert list(values) == ["unset"]
    assert _rollup_total(central) == 3
    forwarder.stop()
