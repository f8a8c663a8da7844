"""A row the central PostgreSQL refuses is parked, not a wall; reviews made at a station reach
the central store (real PostgreSQL, the station's own role over verified TLS)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from inspection.cli import app
from inspection.store.forward import (
    CENTRAL_REVIEWS,
    Forwarder,
    backlog,
    central_entry,
    quarantined,
    release,
)
from inspection.store.models import Inspection, Review, StationBacklog
from inspection.store.store import Store
from tests.conftest import PG_CA_FILE
from tests.store import test_forward
from tests.store.test_forward import Central, _central_keys, _local

pytestmark = pytest.mark.postgres
central = test_forward.central
"""The central store with a station's own role (``tests.store.test_forward``)."""
TOO_LONG = "p" * 80
"""A product name over the central ``String(64)``: SQLite stores it, PostgreSQL refuses it."""


def _refused_at(local: Store, index: int, station: str) -> None:
    """Give the waiting result number ``index`` a value the central store refuses."""
    with local.session() as session:
        key = f"{station}/r{index:04d}"
        update = sa.update(Inspection).where(Inspection.request_id == key)
        session.execute(update.values(product=TOO_LONG))


def test_one_refused_row_in_a_backlog_of_100_is_quarantined_and_the_rest_flows(
    central: Central, tmp_path: Path
) -> None:
    local = _local(tmp_path, central.station, 100)
    _refused_at(local, 37, central.station)
    forwarder = Forwarder(local, central.url, central.blob_dir, batch=40)
    assert forwarder.drain() == 100  # 99 forwarded, 1 parked
    keys = [f"{central.station}/r{i:04d}" for i in range(100)]
    assert _central_keys(central) == [k for k in keys if not k.endswith("r0037")]
    waiting = backlog(local)
    assert (waiting.rows, waiting.quarantined, forwarder.quarantined) == (0, 1, 1)
    assert waiting.alarm(after_s=3600)  # a parked row raises the backlog alarm
    [(sink, key, error)] = quarantined(local)
    assert (sink, key) == ("central", keys[37]) and "too long" in (error or "")
    with central.store.session() as session:
        reported = session.get(StationBacklog, central.station)
    assert reported is not None and reported.quarantined == 1

    assert release(local) == 1 and forwarder.drain() == 1  # refused again: parked again
    assert backlog(local).quarantined == 1
    with central.store.engine.begin() as connection:  # the central side fixed
        for table in ("inspections", "rollup_hourly", "rollup_scores"):
            connection.execute(sa.text(f"ALTER TABLE {table} ALTER product TYPE varchar(128)"))
    forwarder._columns = None
    assert release(local) == 1 and forwarder.drain() == 1
    forwarder.stop()
    assert _central_keys(central) == keys and backlog(local).quarantined == 0


def test_the_station_command_shows_and_releases_the_quarantined_rows(
    central: Central, tmp_path: Path
) -> None:
    local = _local(tmp_path, central.station, 3)
    _refused_at(local, 1, central.station)
    core = {"products": ["brick"], "registry_dir": str(tmp_path), "allow_unsigned_bundles": True}
    core |= {"store_url": local.url, "blob_dir": str(tmp_path / "blobs")}
    url = sa.make_url(central.url).set(query={})  # the CA comes from ca_file
    core["central"] = {"url": url.render_as_string(False), "blob_dir": str(central.blob_dir)}
    core["central"]["ca_file"] = str(PG_CA_FILE)
    station = tmp_path / "station.yaml"
    station.write_text(yaml.safe_dump({"core": core}))
    command = ["station", "forward", "-c", str(station)]
    drained = CliRunner().invoke(app, [*command, "--drain"])
    assert drained.exit_code == 0, drained.output
    assert "ALARM" in drained.output and "0 results" in drained.output
    assert "1 quarantined" in drained.output and f"{central.station}/r0001" in drained.output
    released = CliRunner().invoke(app, [*command, "--release"])
    assert "released 1 quarantined rows" in released.output
    assert "central backlog: 1 results" in released.output and "0 quarantined" in released.output


def test_a_connection_failure_is_retried_not_quarantined(central: Central, tmp_path: Path) -> None:
    local = _local(tmp_path, central.station, 3)
    down = Forwarder(local, test_forward.DOWN_URL, central.blob_dir, allow_plaintext=True)
    with pytest.raises(sa.exc.OperationalError):
        down.forward_once()
    assert (backlog(local).rows, backlog(local).quarantined) == (3, 0)


def _review(local: Store, inspection_id: str, label: str) -> Review:
    return local.add_review(inspection_id, label=label, reviewer="ann", outbox=(CENTRAL_REVIEWS,))


def test_reviews_made_at_the_station_reach_the_central_store_once(
    central: Central, tmp_path: Path
) -> None:
    local = _local(tmp_path, central.station, 2)
    first, second = (row.id for row in local.list_inspections())
    _review(local, first, "false_alarm")
    forwarder = Forwarder(local, central.url, central.blob_dir)
    forwarder.drain()
    _review(local, first, "defect")
    _review(local, second, "good")
    assert backlog(local).rows == 2
    forwarder.drain()
    with local.session() as session:  # a crash before the local marks: all sent again
        session.execute(sa.text("UPDATE outbox_messages SET delivered_at = NULL"))
    forwarder.drain()
    forwarder.stop()
    with central.store.session() as session:
        reviews = session.execute(
            sa.select(Review.inspection_id, Review.label, Review.origin).order_by(Review.id)
        ).all()
        labels = dict(session.execute(sa.select(Inspection.id, Inspection.review_label)).all())
    origins = [f"{central.station}/{n}" for n in (1, 2, 3)]
    assert reviews == [
        (first, "false_alarm", origins[0]),
        (first, "defect", origins[1]),
        (second, "good", origins[2]),
    ]
    assert labels == {first: "defect", second: "good"}  # the latest review, mirrored
    assert backlog(local).rows == 0


def test_a_review_waits_for_its_result_and_one_of_another_station_is_parked(
    central: Central, tmp_path: Path
) -> None:
    local = _local(tmp_path, central.station, 1)
    _refused_at(local, 0, central.station)
    [row] = local.list_inspections()
    _review(local, row.id, "defect")
    forwarder = Forwarder(local, central.url, central.blob_dir)
    forwarder.drain()  # the result is refused: its review waits behind it, not sent
    assert [s for s, _, _ in quarantined(local)] == ["central"]
    assert backlog(local).rows == 1
    with central.store.engine.begin() as connection:  # a result of another station
        connection.execute(
            sa.insert(Inspection).values(
                {c: getattr(row, c) for c in ("score", "threshold", "verdict", "latency_ms")}
                | {"id": "other", "product": "brick", "station_id": "line-other"}
                | {"model_version": "v", "bundle_id": "v", "width": 8, "height": 8}
                | {"image_sha": row.image_sha, "created_at": row.created_at}
            )
        )
    other = central.store.get_inspection("other")
    local.add_inspection(
        **{c.key: getattr(other, c.key) for c in Inspection.__table__.columns},
        outbox=[central_entry("elsewhere", 0)],
    )
    with local.session() as session:  # the station's copy was delivered long ago
        session.execute(sa.text("UPDATE outbox_messages SET delivered_at = created_at "
                                "WHERE key = 'elsewhere'"))  # fmt: skip
    _review(local, "other", "good")
    forwarder.drain()
    forwarder.stop()
    parked = quarantined(local)
    assert [s for s, _, _ in parked] == ["central", CENTRAL_REVIEWS]
    assert "may not review" in (parked[1][2] or "")
    with central.store.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Review)) == 0


def test_reviewers_who_disagree_at_the_station_leave_the_central_part_in_conflict(
    central: Central, tmp_path: Path
) -> None:
    """#90 item 10 at the central store: it decides a part as the station's store did (before
    migration 0019, the last forwarded label won: the central part read ``defect``)."""
    local = _local(tmp_path, central.station, 2)
    part, other = (row.id for row in local.list_inspections())
    for reviewer, label in (("ann", "good"), ("bob", "defect")):  # neither saw the other's label
        local.add_review(part, label=label, reviewer=reviewer, outbox=(CENTRAL_REVIEWS,))
    for reviewer, label in (("ann", "false_alarm"), ("bob", "good")):  # both say good
        local.add_review(other, label=label, reviewer=reviewer, outbox=(CENTRAL_REVIEWS,))
    forwarder = Forwarder(local, central.url, central.blob_dir)
    forwarder.drain()

    def labels(store: Store) -> dict[str, str | None]:
        return {row.id: row.review_label for row in store.list_inspections()}

    assert labels(local) == labels(central.store) == {part: "conflict", other: "good"}
    local.add_review(
        part, label="defect", reviewer="admin", settles=True, outbox=(CENTRAL_REVIEWS,)
    )
    forwarder.drain()
    forwarder.stop()
    assert labels(local) == labels(central.store) == {part: "defect", other: "good"}
    with central.store.session() as session:
        settled = session.scalars(sa.select(Review.settles).where(Review.inspection_id == part))
        assert list(settled) == [False, False, True]
