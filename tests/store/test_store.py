from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from inspection.store.store import InspectionFilter, Store, StoreError


def _fields(**overrides):
    fields = dict(
        product="brick",
        station_id="st-1",
        score=0.7,
        threshold=0.5,
        verdict="NG",
        model_version="brick/v0001",
        bundle_id="v0001-int8",
        latency_ms=12.5,
        regions=[{"box": [1, 2, 3, 4], "area": 4}],
        width=64,
        height=64,
        image_sha="a" * 64,
    )
    fields.update(overrides)
    return fields


def test_add_get_list_count(store_url: str, tmp_path: Path) -> None:
    store = Store.migrated(store_url, tmp_path / "blobs")
    first = store.add_inspection(**_fields(score=0.2, verdict="OK"))
    second = store.add_inspection(**_fields(station_id="st-2"))
    assert store.get_inspection(first.id).verdict == "OK"
    assert store.get_inspection(second.id).regions == [{"box": [1, 2, 3, 4], "area": 4}]
    assert store.count_inspections() == 2
    assert store.count_inspections(InspectionFilter(verdict="NG")) == 1
    assert [r.id for r in store.list_inspections(InspectionFilter(station_id="st-2"))] == [
        second.id
    ]
    assert len(store.list_inspections(limit=1, offset=1)) == 1
    with pytest.raises(StoreError, match="no inspection with id 'nope'"):
        store.get_inspection("nope")


def test_request_id_makes_retries_idempotent(store_url: str, tmp_path: Path) -> None:
    store = Store.migrated(store_url, tmp_path / "blobs")
    first = store.add_inspection(**_fields(request_id="cam-1:0001"))
    again = store.add_inspection(**_fields(request_id="cam-1:0001", score=0.9))
    assert again.id == first.id and again.score == first.score
    assert store.count_inspections() == 1


def test_reviews_are_audited_and_mirrored(store_url: str, tmp_path: Path) -> None:
    store = Store.migrated(store_url, tmp_path / "blobs")
    row = store.add_inspection(**_fields())
    store.add_review(row.id, label="unsure", reviewer="alice")
    store.add_review(row.id, label="defect", defect_type="crack", reviewer="bob", note="clear")
    latest = store.get_inspection(row.id)
    assert (latest.review_label, latest.review_defect_type, latest.reviewed_by) == (
        "defect",
        "crack",
        "bob",
    )
    assert [r.label for r in store.reviews_of(row.id)] == ["unsure", "defect"]
    assert [r.id for r in store.reviewed("brick", ["defect"])] == [row.id]
    future = datetime.now(timezone.utc) + timedelta(hours=1)
    assert store.reviewed("brick", ["defect"], since=future) == []


@pytest.mark.parametrize(
    ("label", "reviewer", "message"),
    [
        ("broken", "alice", "review label must be one of"),
        ("good", " ", "needs the reviewer's name"),
    ],
)
def test_bad_reviews_are_refused(
    store_url: str, tmp_path: Path, label: str, reviewer: str, message: str
) -> None:
    store = Store.migrated(store_url, tmp_path / "blobs")
    row = store.add_inspection(**_fields())
    with pytest.raises(StoreError, match=message):
        store.add_review(row.id, label=label, reviewer=reviewer)


def test_blobs_are_content_addressed(tmp_path: Path) -> None:
    store = Store.migrated(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "blobs")
    sha = store.blobs.put(b"png-bytes", ".png")
    assert store.blobs.put(b"png-bytes", ".png") == sha
    assert store.blobs.get(sha) == b"png-bytes"
    assert store.blobs.path(sha).suffix == ".png"
    with pytest.raises(FileNotFoundError):
        store.blobs.path("0" * 64)


def test_put_new_tells_whether_it_wrote_the_file(tmp_path: Path) -> None:
    """What the pipeline removes again when its row cannot be committed: only files it wrote."""
    store = Store.migrated(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "blobs")
    sha, created = store.blobs.put_new(b"mask-bytes", ".png")
    assert created and store.blobs.get(sha) == b"mask-bytes"
    assert store.blobs.put_new(b"mask-bytes", ".png") == (sha, False)
    assert [name for name, _size in store.blobs.files()] == [sha]


def test_longest_accepted_inputs_fit_their_columns(store_url: str, tmp_path: Path) -> None:
    """Every input the service accepts is storable on PostgreSQL too (which enforces lengths)."""
    from inspection.station.pipeline import check_part_id, check_request_id, stored_request_id
    from inspection.store.models import OutboxEntry

    station = "s" * 64  # longest station id a token can carry
    key = stored_request_id(station, check_request_id("r" * 80))
    part_id = check_part_id("p" * 128)
    store = Store.migrated(store_url, tmp_path / "blobs")
    fields = _fields(request_id=key, station_id=station, part_id=part_id, payload_digest="d" * 64)
    row = store.add_inspection(outbox=[OutboxEntry("mqtt", key, "{}")], **fields)
    assert store.find_by_request_id(key).id == row.id and len(key) == 145


@pytest.mark.parametrize("bad", ["p\x00q", "tab\tbed", "p" * 129])
def test_part_ids_that_postgres_cannot_store_are_refused(bad: str) -> None:
    from inspection.service.errors import http_error
    from inspection.station.errors import InvalidRequest
    from inspection.station.pipeline import check_part_id

    with pytest.raises(InvalidRequest) as caught:
        check_part_id(bad)
    assert http_error(caught.value).status == 422


def test_a_painted_region_is_audited_with_its_review_and_mirrored(
    store_url: str, tmp_path: Path
) -> None:
    store = Store.migrated(store_url, tmp_path / "blobs")
    row = store.add_inspection(**_fields())
    region = store.blobs.put(b"painted mask png", ".png")
    store.add_review(row.id, label="defect", reviewer="alice", region_sha=region)
    assert store.get_inspection(row.id).review_region_sha == region
    store.add_review(row.id, label="defect", reviewer="bob")  # agrees, paints none: kept
    assert store.get_inspection(row.id).review_region_sha == region
    assert [r.region_sha for r in store.reviews_of(row.id)] == [region, None]  # both audited
    store.add_review(row.id, label="false_alarm", reviewer="bob")  # bob changes his own label
    assert store.get_inspection(row.id).review_region_sha is None


@pytest.mark.parametrize(
    ("label", "sha", "message"),
    [
        ("false_alarm", "put", "only a 'defect' review marks a region, got label 'false_alarm'"),
        ("defect", "0" * 64, "is not in the blob store; put it first"),
    ],
)
def test_a_region_needs_a_defect_label_and_a_stored_blob(
    tmp_path: Path, label: str, sha: str, message: str
) -> None:
    store = Store.migrated(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "blobs")
    row = store.add_inspection(**_fields())
    sha = store.blobs.put(b"mask", ".png") if sha == "put" else sha
    with pytest.raises(StoreError, match=message):
        store.add_review(row.id, label=label, reviewer="alice", region_sha=sha)
    assert store.reviews_of(row.id) == []
