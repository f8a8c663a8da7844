"""The views of one part (several cameras per part) in the store and on the review page."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import update

from inspection.dashboard import review
from inspection.store import queries
from inspection.store.models import Inspection
from inspection.store.store import Store

from .test_pages import _open, _store

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=timezone.utc)


def _view(store: Store, request_id: str, part_id: str | None, *, station="s1", minutes=0.0):
    return store.add_inspection(
        created_at=T0 + timedelta(minutes=minutes),
        request_id=f"{station}/{request_id}",
        product=request_id.rsplit(".", 1)[-1],
        station_id=station,
        part_id=part_id,
        score=0.7,
        threshold=0.5,
        verdict="NG",
        model_version="p/v0001",
        bundle_id="v0001-fp32",
        latency_ms=10.0,
        width=8,
        height=8,
        image_sha="0" * 64,
    )


def test_the_views_of_a_part_are_read_by_station_part_and_time(tmp_path: Path) -> None:
    store = Store.migrated(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "blobs")
    top = _view(store, "r-1.top", "part-1")
    _view(store, "r-1.side", "part-1", minutes=0.01)
    _view(store, "r-2.top", "part-2")  # another part
    _view(store, "r-1.top", "part-1", station="s2")  # another station's part-1
    _view(store, "r-9.top", "part-1", minutes=180)  # part-1 again, hours later: not this part
    views = queries.part_views(store, "s1", "part-1", T0)
    assert [(key, row.product) for key, row in views] == [
        ("s1/r-1.top", "top"),
        ("s1/r-1.side", "side"),
    ]
    row = next(
        r for r in queries.review_queue(store, queries.QueueQuery(kind="all")) if r.id == top.id
    )
    frame = review.part_frame(store, row)
    assert frame[["view", "verdict"]].values.tolist() == [["r-1.top", "NG"], ["r-1.side", "NG"]]
    lone = next(
        r
        for r in queries.review_queue(store, queries.QueueQuery(kind="all"))
        if r.part_id == "part-2"
    )
    assert review.part_frame(store, lone).empty

    statement = queries.part_views_statement("s1", "part-1", T0, queries.PART_WINDOW)
    compiled = statement.compile(store.engine)
    params = [compiled.params[name] for name in compiled.positiontup or ()]
    with store.engine.connect() as connection:  # the read walks the (station, time) index
        plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", tuple(params)).all()
    assert "ix_inspections_station_created" in " ".join(str(step[-1]) for step in plan)


def test_the_review_page_shows_the_other_views_of_a_part(seeded_site, site_env) -> None:
    site_env(seeded_site)
    store = _store(seeded_site)
    first_id = queries.review_queue(store, queries.QueueQuery(), limit=1)[0].id  # shown first
    shown = store.get_inspection(first_id)
    with store.engine.begin() as connection:  # the shown inspection becomes view 'top' of a part
        connection.execute(
            update(Inspection).where(Inspection.id == first_id).values(part_id="part-77")
        )
    store.add_inspection(
        created_at=shown.created_at,
        request_id=f"{shown.station_id}/r-77.side",
        product=shown.product,
        station_id=shown.station_id,
        part_id="part-77",
        score=0.01,
        threshold=shown.threshold,
        verdict="OK",
        model_version=shown.model_version,
        bundle_id=shown.bundle_id,
        latency_ms=10.0,
        width=8,
        height=8,
        image_sha=shown.image_sha,
    )
    store.engine.dispose()
    at = _open("review")
    assert at.dataframe[-1].value["id"].iloc[0] == first_id
    assert any("Views of part `part-77`" in m.value for m in at.markdown)
    part = at.dataframe[0].value
    assert sorted(part["verdict"]) == [shown.verdict, "OK"] and "r-77.side" in set(part["view"])
