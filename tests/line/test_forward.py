"""The PLC door with the central store down, then back: every trigger answered from the local
store, then every result forwarded once (real PostgreSQL, real model, file camera)."""

from __future__ import annotations

import dataclasses
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client import generate_latest

from bench._shared import camera_folder, line_config
from inspection.line.handshake import ErrorCode, Trigger
from inspection.line.station import LineStation
from inspection.station.config import CentralConfig
from inspection.store.central_roles import grant_station
from inspection.store.forward import backlog
from inspection.store.store import Store
from tests.conftest import (
    PG_ADMIN_URL,
    PG_CA_FILE,
    _drop_postgres_database,
    _fresh_postgres_database,
    verified,
)

pytestmark = pytest.mark.postgres
DOWN_URL = "postgresql+psycopg://cam:pw@127.0.0.1:1/central"


def test_triggers_are_answered_while_central_is_down_and_arrive_once_it_is_back(
    tmp_path: Path, fp32_bundle: Path, tiny_product: Path, postgres_template: str
) -> None:
    url, name = _fresh_postgres_database(postgres_template)
    central = Store.migrated(url, tmp_path / "central-blobs")
    station_id = f"cam-{uuid.uuid4().hex[:8]}"
    station_url = verified(
        url.replace("inspection:inspection@", f"{station_id}:{grant_station(central, station_id)}@")
    )
    try:
        camera = camera_folder(tmp_path, tiny_product, count=3)
        down = CentralConfig(DOWN_URL, tmp_path / "central-blobs", ca_file=PG_CA_FILE)
        config = line_config(tmp_path, fp32_bundle, camera, station_id=station_id, central=down)
        station = LineStation.build(config)
        station.core.models.refresh()
        assert station.core.forwarder is not None
        station.core.forwarder.start()
        answers = [station.handler.handle(Trigger(f"r-{i}"), source="opcua") for i in range(3)]
        assert [answer.error_code for answer in answers] == [ErrorCode.NONE] * 3
        assert "inspection_forward_backlog_rows 3.0" in generate_latest(station.registry).decode()
        station.stop()

        back = dataclasses.replace(down, url=station_url)
        station = LineStation.build(
            dataclasses.replace(config, core=dataclasses.replace(config.core, central=back))
        )
        assert station.core.forwarder is not None
        station.core.forwarder.start()
        deadline = time.monotonic() + 30
        while backlog(station.core.store).rows and time.monotonic() < deadline:
            time.sleep(0.1)
        station.stop()
        with central.session() as session:
            keys = list(session.scalars(sa.text("SELECT request_id FROM inspections ORDER BY 1")))
            total = session.scalar(sa.text("SELECT sum(total) FROM rollup_hourly"))
        assert (keys, total) == ([f"{station_id}/r-{i}" for i in range(3)], 3)
    finally:
        central.engine.dispose()
        _drop_postgres_database(name)
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP ROLE IF EXISTS "{station_id}"'))
        admin.dispose()
