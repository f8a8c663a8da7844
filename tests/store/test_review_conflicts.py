"""One label per part at a time (``Store.add_review``): a label given on a stale view is
refused naming who labelled the part first, two reviewers who disagree leave it out of
retraining and certification until an admin settles, and painted regions stay. Each reviewer
has their own ``Store`` (engine, connections), as two dashboard processes do."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from inspection.store import queries
from inspection.store.models import REVIEW_CONFLICT, Review
from inspection.store.store import ReviewConflict, SeenLabel, Store, review_outcome

UNREVIEWED = SeenLabel(None, None)


def _part(store: Store) -> str:
    row = store.add_inspection(
        product="brick", station_id="st-1", score=0.7, threshold=0.5, verdict="NG",
        model_version="brick/v0001", bundle_id="v0001-fp32", latency_ms=5.0, width=64,
        height=64, image_sha="a" * 64, audit_sample=True,
    )  # fmt: skip
    return row.id


def _shown(store: Store, inspection_id: str) -> SeenLabel:
    """What the review queue shows a reviewer of ``inspection_id``, as the dashboard reads it."""
    everything = queries.QueueQuery(product="brick", kind="all", status="all")
    (row,) = [r for r in queries.review_queue(store, everything) if r.id == inspection_id]
    return SeenLabel(row.review_label, row.reviewed_by)


@pytest.fixture
def stores(store_url: str, tmp_path: Path) -> tuple[Store, Store]:
    first = Store.migrated(store_url, tmp_path / "blobs")
    second = Store(store_url, tmp_path / "blobs")
    yield first, second
    first.engine.dispose()
    second.engine.dispose()


def test_a_label_on_a_stale_view_is_refused_naming_who_labelled_first(stores) -> None:
    alice, bob = stores
    part = _part(alice)
    seen_by_alice, seen_by_bob = _shown(alice, part), _shown(bob, part)  # both: unreviewed
    region = alice.blobs.put(b"painted region", ".png")
    alice.add_review(part, label="defect", reviewer="alice", region_sha=region, seen=seen_by_alice)
    with pytest.raises(ReviewConflict, match=rf"inspection {part} was labelled 'defect' by alice"):
        bob.add_review(part, label="good", reviewer="bob", seen=seen_by_bob)
    row = bob.get_inspection(part)
    assert (row.review_label, row.reviewed_by, row.review_region_sha) == ("defect", "alice", region)
    assert [r.reviewer for r in bob.reviews_of(part)] == ["alice"]
    bob.add_review(part, label="defect", reviewer="bob", seen=_shown(bob, part))  # reloaded: agrees
    assert bob.get_inspection(part).review_region_sha == region  # alice's region stays


def test_concurrent_reviewers_take_turns(store_url: str, tmp_path: Path) -> None:
    """Six reviewers, each with their own store, label one unreviewed part at the same
    moment: one label is stored, five are refused, nothing else fails."""
    Store.migrated(store_url, tmp_path / "blobs").engine.dispose()
    reviewers = [Store(store_url, tmp_path / "blobs") for _ in range(6)]
    part = _part(reviewers[0])
    start = threading.Barrier(len(reviewers))
    outcomes: list[str] = []

    def label(store: Store, index: int) -> None:
        start.wait()
        try:
            name = f"r{index}"
            store.add_review(part, label=("good", "defect")[index % 2], reviewer=name,
                             seen=UNREVIEWED)  # fmt: skip
            outcomes.append("stored")
        except ReviewConflict:
            outcomes.append("refused")
        except Exception as exc:  # any other failure is the finding
            outcomes.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=label, args=(s, i)) for i, s in enumerate(reviewers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused"] * 5 + ["stored"]
    assert len(reviewers[0].reviews_of(part)) == 1
    for store in reviewers:
        store.engine.dispose()


@pytest.mark.parametrize("settled", ["good", "defect"])
def test_disagreeing_reviewers_leave_the_part_out_until_an_admin_settles(
    stores, settled: str
) -> None:
    alice, bob = stores
    part = _part(alice)
    region = alice.blobs.put(b"painted region", ".png")
    alice.add_review(part, label="defect", reviewer="alice", region_sha=region, seen=UNREVIEWED)
    bob.add_review(part, label="good", reviewer="bob", seen=_shown(bob, part))  # saw, disagrees
    row = bob.get_inspection(part)
    assert (row.review_label, row.review_region_sha) == (REVIEW_CONFLICT, region)
    conflicts = queries.QueueQuery(product="brick", kind="all", status="conflict")
    assert [r.id for r in queries.review_queue(bob, conflicts)] == [part]
    assert bob.reviewed("brick", ["good", "defect", "false_alarm"]) == []  # retraining
    (audited,) = queries.audit_parts(bob, "brick")  # certification: an undecided audit part
    assert not audited.decided and not audited.good
    alice.add_review(part, label="defect", reviewer="alice", seen=_shown(alice, part))
    assert alice.get_inspection(part).review_label == REVIEW_CONFLICT  # a reviewer cannot settle

    alice.add_review(part, label=settled, reviewer="ann", seen=_shown(alice, part), settles=True)
    row = alice.get_inspection(part)
    assert (row.review_label, row.reviewed_by) == (settled, "ann")
    assert row.review_region_sha == (region if settled == "defect" else None)
    assert [r.id for r in alice.reviewed("brick", [settled])] == [part]
    (audited,) = queries.audit_parts(alice, "brick")
    assert audited.decided and audited.good is (settled == "good")
    assert [r.label for r in alice.reviews_of(part)] == ["defect", "good", "defect", settled]


@pytest.mark.parametrize(
    ("current", "by", "label", "reviewer", "settles", "outcome"),
    [
        (None, None, "good", "bob", False, "good"),
        ("defect", "alice", "good", "alice", False, "good"),  # her own change
        ("defect", "alice", "defect", "bob", False, "defect"),  # agrees
        ("false_alarm", "alice", "good", "bob", False, "good"),  # both: a good part
        ("unsure", "alice", "defect", "bob", False, "defect"),  # unsure yields
        ("defect", "alice", "good", "bob", False, REVIEW_CONFLICT),
        ("good", "alice", "unsure", "bob", False, REVIEW_CONFLICT),  # doubt keeps it out
        (REVIEW_CONFLICT, "bob", "good", "bob", False, REVIEW_CONFLICT),
        (REVIEW_CONFLICT, "bob", "good", "ann", True, "good"),
        ("defect", "alice", "good", "ann", True, "good"),
    ],
)
def test_review_outcome(current, by, label, reviewer, settles, outcome) -> None:
    review = Review(label=label, reviewer=reviewer)
    assert review_outcome(current, by, review, settles=settles) == outcome
