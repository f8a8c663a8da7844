"""The dashboard's SQL aggregations and trade-off maths on small hand-made data."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from inspection.core.bundle import VALIDATION_SCORES_FILE
from inspection.core.errors import BundleError, RegistryError
from inspection.core.registry import Registry
from inspection.core.signing import SigningError, verify_record
from inspection.dashboard import models, overview, retraining, review, thresholds
from inspection.store import queries
from inspection.store.models import StationBacklog
from inspection.store.store import Store, StoreError

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=timezone.utc)


def _row(
    store: Store, minutes: float, score: float, *, product="p", station="s1",
    bundle="v0001-fp32", **extra,
):  # fmt: skip
    return store.add_inspection(
        created_at=T0 + timedelta(minutes=minutes),
        product=product,
        station_id=station,
        score=score,
        threshold=0.5,
        verdict="NG" if score >= 0.5 else "OK",
        model_version=f"{product}/v0001",
        bundle_id=bundle,
        latency_ms=10.0,
        width=8,
        height=8,
        image_sha="0" * 64,
        **extra,
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store.migrated(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "blobs")
    for minutes, score, station in [
        (0, 0.1, "s1"),
        (10, 0.45, "s1"),
        (20, 0.9, "s1"),
        (70, 0.55, "s2"),
        (80, 0.2, "s2"),
        (60 * 24 + 5, 1.0, "s2"),
    ]:
        _row(store, minutes, score, station=station)
    _row(store, 5, 0.7, product="q")
    return store


def test_volume_by_hour_and_day(store: Store) -> None:
    hours = queries.volume_over_time(store, period="hour", product="p")
    assert [(r.bucket.hour, r.station_id, r.total, r.ng) for r in hours] == [
        (8, "s1", 3, 1),
        (9, "s2", 2, 1),
        (8, "s2", 1, 1),
    ]
    assert hours[0].bucket == T0 and hours[-1].bucket == T0 + timedelta(days=1)
    days = queries.volume_over_time(store, period="day", since=T0 + timedelta(hours=1))
    assert [(r.bucket.day, r.product, r.station_id, r.total) for r in days] == [
        (1, "p", "s2", 2),
        (2, "p", "s2", 1),
    ]


def test_station_health_and_histogram(store: Store) -> None:
    rows = {(r.station_id, r.product): r for r in queries.station_health(store)}
    assert rows["s1", "p"].total == 3 and rows["s1", "p"].ng == 1
    assert rows["s2", "p"].last_seen == T0 + timedelta(days=1, minutes=5)
    histogram = queries.score_histogram(store, "p", bins=10)
    assert histogram.tolist() == [0, 1, 1, 0, 1, 1, 0, 0, 0, 2]  # 0.9 and 1.0 share the last bin


def test_station_table_is_text_with_units(store: Store) -> None:
    now = T0 + timedelta(days=1, minutes=30)
    table = overview.station_table(overview.station_frame(store, since=None, now=now))
    first = table.iloc[0].to_dict()
    assert list(table.columns) == list(overview.STATION_COLUMNS.values())
    assert first["station"] == "s1" and first["status"] == "last result 24.2 h ago"
    assert first["last seen"] == "2025-03-01 08:20"
    assert (first["inspections"], first["NG rate"], first["mean latency"]) == (
        "3",
        "33.3%",
        "10 ms",
    )
    assert table["station"].tolist() == ["s1", "s1", "s2"]
    assert table.iloc[2]["status"] == "last result 25 min ago"  # results alone: never "online"


def test_a_station_is_online_only_while_its_heartbeat_is_fresh(store: Store) -> None:
    """A stopped station showed "online" for an hour after its last result; now "online" rests
    on the station's own report (``station_backlog``), stale after two minutes."""
    now = T0 + timedelta(days=1, minutes=30)
    with store.session() as session:
        for station, ago in (("s1", timedelta(seconds=30)), ("s2", timedelta(minutes=10))):
            session.add(StationBacklog(
                station_id=station, backlog_rows=0, backlog_bytes=0, rate_per_s=0.0,
                reported_at=now - ago,
            ))  # fmt: skip
    frame = overview.station_frame(store, since=None, now=now)
    status = dict(zip(frame["station_id"], frame["status"], strict=False))
    assert status == {"s1": "online", "s2": "not heard for 10 min"}


def test_drift_line_says_the_verdict_or_why_there_is_none() -> None:
    flat = np.full(overview.DRIFT_BINS, 0.1)
    make = lambda count, psi, ref: overview.Drift(  # noqa: E731
        "p", flat, count, 0.2, flat if psi is not None else None, "validation, 60 good parts",
        0.2, psi, ref,
    )  # fmt: skip
    assert "PSI 0.300 (drifted): 1,200 production parts vs validation, 60" in overview.drift_line(
        make(1200, 0.3, 60)
    )
    assert "not enough data (PSI 0.010)" in overview.drift_line(make(1200, 0.01, 10))
    assert "no held-out scores" in overview.drift_line(make(1200, None, 0))


def test_review_queue_kinds_status_and_paging(store: Store) -> None:
    ids = lambda q, **kw: [r.score for r in queries.review_queue(store, q, **kw)]  # noqa: E731
    assert ids(queries.QueueQuery(product="p", kind="ng")) == [1.0, 0.9, 0.55]
    assert ids(queries.QueueQuery(product="p", kind="borderline")) == [0.45]
    assert ids(queries.QueueQuery(product="p", kind="borderline", margin=0.3)) == [0.45, 0.2]
    both = queries.QueueQuery(product="p")
    assert queries.count_review_queue(store, both) == 4
    first = queries.review_queue(store, both, limit=2)
    after = queries.cursor_after(first[-1], both.order)
    assert ids(both, limit=2, after=after) == [0.55, 0.45]
    top = queries.review_queue(store, both, limit=1)[0]
    review.submit(store, top.id, label="defect", reviewer="ann", defect_type=" crack ")
    assert queries.count_review_queue(store, both) == 3
    done = queries.review_queue(store, queries.QueueQuery(product="p", status="reviewed"))
    assert [(r.review_label, r.review_defect_type, r.reviewed_by) for r in done] == [
        ("defect", "crack", "ann")
    ]
    assert queries.defect_types(store, "p") == ["crack"] and queries.defect_types(store, "q") == []


def test_the_audit_queue_lists_the_random_sample_and_its_confirmed_goods(store: Store) -> None:
    """OK and NG audit parts alike; those confirmed good (good, false alarm) certify, with the
    bundle that scored them."""
    rows = [
        _row(store, 90 + i, score, audit_sample=True) for i, score in enumerate((0.1, 0.3, 0.8))
    ]
    rows.append(_row(store, 95, 0.6, audit_sample=True, bundle="v0002-int8"))
    audit = queries.QueueQuery(product="p", kind="audit")
    assert [r.score for r in queries.review_queue(store, audit)] == [0.8, 0.6, 0.3, 0.1]
    for row, label in zip(rows, ("good", "false_alarm", "defect", "good"), strict=True):
        review.submit(store, row.id, label=label, reviewer="ann")
    found = queries.audit_parts(store, "p")
    assert [(p.inspection_id, p.bundle_id, p.score, p.label) for p in found] == [
        (rows[0].id, "v0001-fp32", 0.1, "good"), (rows[1].id, "v0001-fp32", 0.3, "false_alarm"),
        (rows[2].id, "v0001-fp32", 0.8, "defect"), (rows[3].id, "v0002-int8", 0.6, "good"),
    ]  # fmt: skip
    assert [p.good for p in found] == [True, True, False, True]


def test_audit_parts_keep_their_audit_rate_and_what_scaled_their_score(store: Store) -> None:
    """Migration 0017: a re-calibrated station's scores share the bundle id, not the scale;
    the Thresholds page's audit sample reads one bundle on one scale."""
    signed = _row(store, 90, 0.2, audit_sample=True, audit_rate=200, score_scale="a" * 16)
    other = _row(store, 91, 0.3, audit_sample=True, audit_rate=2000, score_scale="b" * 16)
    for row in (signed, other):
        review.submit(store, row.id, label="good", reviewer="ann")
    found = queries.audit_parts(store, "p")
    assert [(p.audit_rate, p.scale) for p in found] == [(200, "a" * 16), (2000, "b" * 16)]
    assert queries.audit_parts(store, "p", since=T0 + timedelta(minutes=91)) == found[1:]
    one = queries.labelled_scores(
        store, "p", audit_only=True, bundle_id="v0001-fp32", scale="a" * 16
    )
    assert one == [(0.2, "good")]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"kind": "bad"},
            "queue kind must be one of ['ng', 'borderline', 'ng_or_borderline', 'audit', 'all'], got 'bad'",
        ),
        (
            {"status": "new"},
            "queue status must be one of ['unreviewed', 'reviewed', 'conflict', 'all'], got 'new'",
        ),
        (
            {"order": "random"},
            "queue order must be one of ['score_desc', 'newest', 'oldest', 'closest_to_threshold'], got 'random'",
        ),
        ({"margin": 1.5}, "borderline margin must be in [0, 1], got 1.5"),
    ],
)
def test_bad_queue_queries(kwargs, message) -> None:
    with pytest.raises(StoreError) as info:
        queries.QueueQuery(**kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda s: queries.volume_over_time(s, period="week"),
            "period must be one of ['hour', 'day'], got 'week'",
        ),
        (
            lambda s: queries.score_histogram(s, "p", bins=0),
            "bins must divide 100, got 0",
        ),
        (
            lambda s: queries.review_queue(s, queries.QueueQuery(), limit=0),
            "a queue page needs limit >= 1, got 0",
        ),
        (
            lambda s: review.queue_page(s, queries.QueueQuery(), page_size=0),
            "page size must be at least 1, got 0",
        ),
        (
            lambda s: review.submit(s, "nope", label="defect", reviewer="ann"),
            "no inspection with id 'nope'",
        ),
    ],
)
def test_bad_store_calls(store: Store, call, message) -> None:
    with pytest.raises(StoreError) as info:
        call(store)
    assert str(info.value) == message


@pytest.mark.parametrize("order", queries.QUEUE_ORDERS)
def test_keyset_pages_walk_the_whole_queue_once(store: Store, order: str) -> None:
    query = queries.QueueQuery(product="p", kind="all", order=order)
    everything = [r.id for r in queries.review_queue(store, query, limit=100)]
    seen, after = [], None
    for number in range(10):
        page = review.queue_page(store, query, page_size=2, after=after, page=number)
        seen += [r.id for r in page.rows]
        if page.next is None:
            break
        after = page.next
    assert seen == everything and len(seen) == 6
    assert (page.page, page.pages, page.total, page.counted_all) == (2, 3, 6, True)
    jumped = [review.page_start(store, query, n, page_size=2) for n in range(4)]
    firsts = [review.queue_page(store, query, page_size=2, after=c).rows for c in jumped[:3]]
    assert [rows[0].id for rows in firsts] == everything[::2]  # a jump lands where paging does
    assert jumped[0] is None and jumped[3] is None  # the first page, and past the end


def test_queue_count_stops_at_the_cap(store: Store) -> None:
    query = queries.QueueQuery(product="p", kind="all")
    assert queries.count_review_queue(store, query, cap=4) == 4
    assert queries.count_review_queue(store, query) == 6


LABELLED = thresholds.LabelledScores(
    np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9]),
    np.array([0, 0, 0, 0, 1, 1, 1, 1], dtype=np.int8),
    "hand-made",
)


def test_tradeoff_counts() -> None:
    at = thresholds.tradeoff(LABELLED, 0.5)
    assert (at.false_alarm_rate, at.miss_rate) == (0.25, 0.25)
    assert at.precision == 0.75 and at.recall == 0.75 and at.f1 == 0.75
    none = thresholds.tradeoff(thresholds.empty_scores("x"), 0.5)
    assert math.isnan(none.false_alarm_rate) and math.isnan(none.miss_rate)


def test_suggestions() -> None:
    best = thresholds.suggest_max_f1(LABELLED)
    assert best.threshold == pytest.approx(0.4) and best.f1 == pytest.approx(8 / 9)
    strict = thresholds.suggest_for_miss_rate(LABELLED, 0.0)
    assert strict.threshold == pytest.approx(0.4) and strict.miss_rate == 0.0
    loose = thresholds.suggest_for_miss_rate(LABELLED, 0.25)
    assert loose.threshold == pytest.approx(0.7) and loose.false_alarm_rate == 0.0
    assert thresholds.roc_curve(LABELLED)["auc"] == pytest.approx(15 / 16)
    with pytest.raises(ValueError, match="needs good and defective samples, got 2 good and 0"):
        thresholds.suggest_max_f1(
            thresholds.LabelledScores(np.array([0.1, 0.2]), np.zeros(2, np.int8), "only good")
        )


def test_a_save_records_the_budget_only_at_the_value_the_budget_control_chose(
    tmp_path: Path,
) -> None:
    registry = Registry(tmp_path)
    suggestion, choice = thresholds.suggest_for_budget(LABELLED, 0.05)
    pick = thresholds.BudgetPick.of(suggestion, choice)
    assert pick == thresholds.BudgetPick(suggestion.threshold, 0.05)
    saved = thresholds.save_threshold(
        registry, "p", suggestion.threshold, actor="qe", reason="5 % budget", picked=pick
    )
    assert (saved.value, saved.budget) == (suggestion.threshold, 0.05)
    moved = suggestion.threshold - 0.0001  # the slider moved by hand after the pick
    saved = thresholds.save_threshold(registry, "p", moved, actor="qe", reason="x", picked=pick)
    assert saved.budget is None
    saved = thresholds.save_threshold(registry, "p", suggestion.threshold, actor="qe", reason="x")
    assert saved.budget is None


def test_expected_ng() -> None:
    histogram = np.zeros(100, dtype=np.int64)
    histogram[[10, 40, 55, 90]] = [50, 30, 15, 5]
    assert thresholds.expected_ng(histogram, 0.5, 1000.0) == pytest.approx((0.2, 200.0))
    assert thresholds.expected_ng(histogram, 0.55, 1000.0) == pytest.approx((0.2, 200.0))
    assert thresholds.expected_ng(histogram, 0.56, 1000.0) == pytest.approx((0.05, 50.0))
    assert thresholds.expected_ng(np.zeros(100), 0.5, 10.0) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "expected {'scores': [...], 'labels': [0|1, ...]}"),
        ('{"scores": [0.1]}', "expected {'scores': [...], 'labels': [0|1, ...]}"),
        ('{"scores": [0.1, 0.2], "labels": [1]}', "2 scores but 1 labels; they must pair up"),
        ('{"scores": [0.1], "labels": [2]}', "labels must be 0 (good) or 1 (defective)"),
        ('{"samples": [{"score": 0.1, "label": "broken"}]}', "expected {'scores'"),
    ],
)
def test_bad_validation_scores(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / VALIDATION_SCORES_FILE).write_text(content)
    with pytest.raises(BundleError, match=None) as info:
        thresholds.read_validation_scores(tmp_path)
    assert message in str(info.value)


def test_validation_scores_both_layouts(tmp_path: Path) -> None:
    assert thresholds.read_validation_scores(tmp_path) is None
    (tmp_path / VALIDATION_SCORES_FILE).write_text(
        json.dumps(
            {"samples": [{"score": 0.2, "label": "good"}, {"score": 0.8, "label": "defect"}]}
        )
    )
    data = thresholds.read_validation_scores(tmp_path)
    assert data.labels.tolist() == [0, 1] and data.scores.tolist() == [0.2, 0.8]


def test_reviewed_scores_map_labels(store: Store) -> None:
    rows = queries.review_queue(store, queries.QueueQuery(product="p", kind="ng"), limit=10)
    labels = ["defect", "false_alarm", "unsure"]  # scores 1.0, 0.9, 0.55
    for row, label in zip(rows, labels, strict=True):
        review.submit(store, row.id, label=label, reviewer="ann")
    data = thresholds.reviewed_scores(store, "p")
    assert sorted(zip(data.scores.tolist(), data.labels.tolist(), strict=True)) == [
        (0.9, 0),
        (1.0, 1),
    ]


def test_psi() -> None:
    flat = np.full(10, 0.1)
    assert overview.population_stability_index(flat, flat) == pytest.approx(0.0)
    shifted = np.r_[np.full(5, 0.02), np.full(5, 0.18)]
    assert overview.population_stability_index(flat, shifted) > overview.PSI_ALERT


def test_promote_needs_who_and_why(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    with pytest.raises(RegistryError, match="a promotion needs who"):
        models.promote(registry, "p", "v0001-fp32", actor=" ", reason="x")
    with pytest.raises(RegistryError, match="a rollback needs who"):
        models.rollback(registry, "p", actor="ann", reason="")


# A report.json as retraining wrote it before reports carried a schema version.
LEGACY_REPORT = {
    "run": {"product": "p", "run": "run-1", "actor": "cron"},
    "finished_at": "2025-01-02T00:00:00+00:00",
    "decision": "keep",
    "promote": False,
    "reasons": ["image_auroc 0.9400 < champion 0.9500 - 0.01"],
    "reason": "image_auroc 0.9400 < champion 0.9500 - 0.01",
    "policy": {},
    "data": {"train_images": 10},
    "champion": {"bundle_id": "v0001-int8", "model_version": "p/v0001", "threshold": 0.5,
                 "metrics": {"image_auroc": 0.95}, "full_metrics": {}, "scores": [0.1]},
    "challenger": {"bundle_id": "v0002-int8", "model_version": "p/v0002", "threshold": 0.5,
                   "metrics": {"image_auroc": 0.94, "aupro": 0.8}, "full_metrics": {},
                   "scores": [0.2]},
    "figures": {"roc": "roc.png"},
}  # fmt: skip


def test_retrain_runs_merge_reports_and_events(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")
    reports = tmp_path / "reports"
    folder = reports / "retrain" / "p" / "run-1"
    folder.mkdir(parents=True)
    (folder / "report.json").write_text(json.dumps(LEGACY_REPORT))
    (reports / "retrain" / "p" / "broken").mkdir()
    (reports / "retrain" / "p" / "broken" / "report.json").write_text("{oops")
    registry.journal.record_event("p", "retrain", actor="cron", reason="weekly", run="run-1")
    registry.journal.record_event(
        "p", "retrain", actor="cron", reason="failed during export: OSError: disk full",
        decision="failed", status="failed", run="run-2", champion="v0001-int8", challenger=None,
    )  # fmt: skip
    registry.journal.record_event(
        "p", "retrain", actor="x", reason="?", decision="maybe", run="run-3"
    )
    foreign = reports / "retrain" / "p" / "run-from-elsewhere"  # committed, not in this log
    foreign.mkdir()
    (foreign / "report.json").write_text(json.dumps(LEGACY_REPORT))
    runs = retraining.retrain_runs(registry, reports, "p")
    assert [r.run for r in runs] == ["run-2", "run-1"]  # run-3's event is malformed: skipped
    compared = runs[1].comparison()
    assert compared.loc["image_auroc", "Δ"] == pytest.approx(-0.01)
    assert math.isnan(compared.loc["aupro", "champion"])
    assert (runs[1].champion, runs[1].challenger, runs[1].decision) == (
        "v0001-int8",
        "v0002-int8",
        "kept",
    )
    assert (runs[0].decision, runs[0].champion, runs[0].challenger) == (
        "failed",
        "v0001-int8",
        "",
    )
    assert runs[0].reason.startswith("failed during export")


def test_tuning_frame_marks_the_served_bundle(tmp_path: Path) -> None:
    from inspection.runtime.hardware import CpuInfo
    from inspection.runtime.tuning import (
        TUNING_SCHEMA,
        PrecisionMeasurement,
        TuningRecord,
        write_tuning,
    )

    registry = Registry(tmp_path)
    assert models.tuning_frame(registry, "brick").empty
    record = TuningRecord(
        schema_version=TUNING_SCHEMA, product="brick", live_bundle_id="v0001-int8",
        model_version="brick/v0001", chosen_bundle_id="v0001-fp32", chosen_precision="fp32",
        measurements=(
            PrecisionMeasurement("v0001-int8", "int8", 19.3, 21.0, 53.8, True, "live"),
            PrecisionMeasurement("v0001-fp32", "fp32", 11.3, 12.0, 96.5, True, "fp32 reference"),
        ),
        cpu=CpuInfo("AMD EPYC", 2, ("avx2", "fma")), load_1m=0.8, measured_at="2026-01-01",
    )  # fmt: skip
    write_tuning(registry, record)
    frame = models.tuning_frame(registry, "brick")
    assert frame[frame["served"]]["bundle"].tolist() == ["v0001-fp32"]
    assert frame["p50_ms"].tolist() == [19.3, 11.3]
    assert "VNNI no" in frame["cpu"].iloc[0]


def test_the_review_image_is_read_at_its_models_bit_depth(tmp_path: Path) -> None:
    """A 12-bit upload stored as sent showed near black (values 0..15) in the review panel."""
    import io

    from PIL import Image

    from inspection.core.bundle import Preprocessing
    from inspection.core.config import to_mapping

    store = Store.migrated(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "blobs")
    registry = Registry(tmp_path / "registry")
    prep = Preprocessing((32, 32), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), source_bits=12)
    registry.bundles.create_version(
        "p", model_kind="patchcore", config={}, dataset={}, metrics={}, packages={},
        extra={"preprocessing": to_mapping(prep)},
    )  # fmt: skip
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8), 2048, np.uint16)).save(buffer, "PNG")
    sha = store.blobs.put(buffer.getvalue(), ".png")
    store.add_inspection(
        created_at=T0, product="p", station_id="s1", score=0.9, threshold=0.5, verdict="NG",
        model_version="p/v0001", bundle_id="v0001-fp32", latency_ms=1.0, width=8, height=8,
        image_sha=sha,
    )  # fmt: skip
    row = queries.review_queue(store, queries.QueueQuery(product="p"))[0]
    assert int(review.load_views(store, row, registry).image.max()) == 128  # 2048 >> 4
    assert int(review.load_views(store, row).image.max()) == 8  # the 16-bit default: >> 8
    assert review.image_reading(registry, "p/v0009") == (16, None)  # a version gone: defaults


def _report(store: Store, station: str, **values) -> None:
    row = {"backlog_rows": 0, "backlog_bytes": 0, "oldest_age_s": None, "rate_per_s": 0.0}
    with store.session() as session:
        session.add(StationBacklog(station_id=station, **(row | values)))


def test_backlog_frame_lists_each_station_with_its_alarm(store: Store) -> None:
    now = T0 + timedelta(hours=2)
    _report(store, "quiet", reported_at=now - timedelta(seconds=5))
    _report(  # past its own setting (60 s), well within the default
        store, "late", backlog_rows=1200, backlog_bytes=25_000_000, oldest_age_s=90.0,
        rate_per_s=2.5, alarm_after_s=60.0, reported_at=now - timedelta(seconds=3),
    )  # fmt: skip
    _report(  # no setting reported: the dashboard's default
        store, "unset", backlog_rows=3, oldest_age_s=overview.BACKLOG_ALARM_AFTER_S + 1,
        reported_at=now,
    )  # fmt: skip
    _report(store, "silent", reported_at=now - overview.SILENT_REPORT_AFTER - timedelta(minutes=1))
    _report(store, "parked", quarantined=1, reported_at=now)
    frame = overview.backlog_frame(store, now=now)
    assert list(frame.columns) == list(overview.BACKLOG_COLUMNS)
    alarms = dict(zip(frame["station_id"], frame["alarm"], strict=True))
    assert alarms == {
        "late": "oldest waiting 90 s (alarm after 60 s)",
        "parked": "1 rows refused by the central store, quarantined",
        "quiet": "",
        "silent": "not heard for 3 min",
        "unset": "oldest waiting 5 min (alarm after 5 min)",
    }
    late = frame.set_index("station_id").loc["late"]
    assert (late["rows"], late["bytes"], late["rate_per_s"]) == (1200, 25_000_000, 2.5)

    table = overview.backlog_table(frame, now).set_index("station")
    assert list(table.columns) == list(overview.BACKLOG_COLUMNS.values())[1:]
    assert table.loc["late"].to_dict() == {
        "alarm": "⚠ oldest waiting 90 s (alarm after 60 s)",
        "waiting": "1,200",
        "bytes": "25.0 MB",
        "oldest": "90 s",
        "forwarded": "2.5/s",
        "quarantined": "0",
        "last heard": "2025-03-01 09:59:57 (3 s ago)",
    }
    assert (table.loc["quiet", "alarm"], table.loc["quiet", "oldest"]) == ("ok", "—")


def test_backlog_frame_of_a_store_no_station_reports_to(store: Store) -> None:
    frame = overview.backlog_frame(store)
    assert frame.empty and list(frame.columns) == list(overview.BACKLOG_COLUMNS)


def test_control_frame_lists_each_stations_signed_calls(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")
    key = Ed25519PrivateKey.generate()
    call = {"user": "op-a", "role": "operator", "peer": "10.0.0.5:50000"}
    registry.journal.record_control("cam-1", call | {"method": "Halt", "arguments": ["0", "x"],
                                                     "result": "BadUserAccessDenied"}, key)  # fmt: skip
    row = registry.journal.record_control(
        "cam-2", call | {"method": "StartSingleJob", "arguments": [], "result": "Good"}, None
    )
    frame = models.control_frame(registry)
    assert sorted(frame["station"]) == ["cam-1", "cam-2"] and "signature" not in row
    halt = frame[frame["station"] == "cam-1"].iloc[0]
    assert list(halt[["method", "arguments", "result", "check"]]) == [
        "Halt", "0, x", "BadUserAccessDenied", "verified",
    ]  # fmt: skip
    assert list(frame[frame["station"] == "cam-2"]["check"]) == ["unsigned"]
    (signed,) = [c | {"result": "Good"} for c in registry.journal.controls() if "signature" in c]
    with pytest.raises(SigningError, match="bad signature"):
        verify_record(signed, key.public_key(), "control call")
