"""Retention: what prune keeps and deletes, and that blob GC survives being killed."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from inspection.core.errors import ConfigError, UnknownKeyError
from inspection.store import queries
from inspection.store.forward import central_entry
from inspection.store.models import SHA_COLUMNS, Inspection, OutboxEntry
from inspection.store.retention import KeepPolicy, RetentionConfig, prune
from inspection.store.store import Store

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
POLICY = KeepPolicy(blob_days=7, kept_blob_days=30, row_days=60)
CONFIG = RetentionConfig(default=POLICY, pause_seconds=0.0, grace_minutes=0.0, batch_size=3)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"default": {"row_days": 10, "kept_blob_days": 30}}, "row_days: result rows must"),
        ({"default": {"kept_blob_days": None, "row_days": 365}}, "row_days: result rows must"),
        ({"default": {"blob_days": 40, "kept_blob_days": 30}}, "kept_blob_days: NG/reviewed"),
        ({"default": {"blob_days": -1}}, "blob_days: must be >= 0"),
        ({"products": {"brick": {"blob_day": 3}}}, "products.brick: unknown key(s) 'blob_day'"),
        ({"audit_rate": -5}, "audit_rate"),
        ({"batch_size": 0}, "batch_size: must be >= 1"),
        ({"alarm_fraction": 1.5}, "alarm_fraction"),
        ({"keep_days": 3}, "unknown key(s) 'keep_days'"),
    ],
)
def test_bad_retention_settings_are_refused_by_name(data: dict, error: str) -> None:
    from inspection.core.config import from_mapping

    with pytest.raises((ConfigError, UnknownKeyError), match=re.escape(error)):
        from_mapping(RetentionConfig, data, "retention.yaml")


def test_a_product_override_replaces_only_the_keys_it_names() -> None:
    config = RetentionConfig(default=POLICY, products={"brick": {"kept_blob_days": 45}})
    assert config.policy("brick") == KeepPolicy(blob_days=7, kept_blob_days=45, row_days=60)
    assert config.policy("grass") == POLICY


def _add(store: Store, name: str, days: float, **fields: object) -> Inspection:
    """A row ``days`` old with its own image/map blobs and a mask shared by every row."""
    image = store.blobs.put(f"image {name}".encode(), ".png")
    blobs = {
        "image_sha": image,
        "map_sha": store.blobs.put(f"map {name}".encode(), ".png"),
        "mask_sha": store.blobs.put(b"shared all-zero mask", ".png"),
        "overlay_sha": store.blobs.put(f"overlay {name}".encode(), ".jpg"),
    }
    row = {
        "id": name,
        "created_at": NOW - timedelta(days=days),
        "product": "brick",
        "station_id": "st-1",
        "score": 0.1,
        "threshold": 0.5,
        "verdict": "OK",
        "model_version": "v1",
        "bundle_id": "v1-fp32",
        "latency_ms": 5.0,
        "width": 8,
        "height": 8,
    }
    values = row | blobs | fields
    added = store.add_inspection(**(values | {"received_at": values["created_at"]}))
    _received_when_stamped(store, name)
    return added


def _received_when_stamped(store: Store, row_id: str) -> None:
    """Set the store's receive time of ``row_id`` to its own stamp, as if the store had taken
    the row then: on PostgreSQL past the trigger that sets it (migration 0013), as the owner."""
    with store.engine.begin() as connection:
        if connection.dialect.name != "postgresql":
            return
        connection.execute(text("ALTER TABLE inspections DISABLE TRIGGER inspections_received"))
        connection.execute(
            text("UPDATE inspections SET received_at = created_at WHERE id = :id"), {"id": row_id}
        )
        connection.execute(text("ALTER TABLE inspections ENABLE TRIGGER inspections_received"))


def _dangling_and_orphans(store: Store) -> tuple[list[str], list[str]]:
    """Rows pointing at a missing file, and files no row points at."""
    with store.session() as session:
        rows = list(session.scalars(select(Inspection)))
    used: set[str] = set()
    dangling = []
    for row in rows:
        shas = [getattr(row, c) for c in SHA_COLUMNS if c != "image_sha" or not row.blobs_pruned_at]
        for sha in filter(None, shas):
            used.add(sha)
            if not store.blobs.exists(sha):
                dangling.append(f"{row.id}:{sha[:8]}")
    orphans = [sha for sha, _size in store.blobs.files() if sha not in used]
    return dangling, orphans


def test_prune_keeps_what_the_policy_keeps_and_removes_the_rest(
    store_url: str, tmp_path: Path
) -> None:
    store = Store.migrated(store_url, tmp_path / "blobs")
    _add(store, "good-new", 2)
    _add(store, "good-old", 10)
    _add(store, "ng-unreviewed", 20, verdict="NG")
    _add(store, "ng-expired", 40, verdict="NG")
    _add(store, "audit-old", 10, audit_sample=True)
    _add(store, "trained-on", 80)
    _add(store, "row-expired", 70)
    _add(store, "undelivered", 70, outbox=[OutboxEntry("plc", "k1", "{}")])
    reviewed = _add(store, "reviewed-good", 10)
    store.add_review(reviewed.id, label="good", reviewer="ann")
    # the same image bytes as an old good part, inspected again recently: the file must stay
    shared = _add(store, "shared-new", 1, image_sha=store.blobs.put(b"image good-old", ".png"))
    stray = store.blobs.put(b"a file no row names", ".bin")

    report = prune(store, CONFIG, protected={"trained-on"}, now=NOW)

    holding = {"good-new", "ng-unreviewed", "audit-old", "trained-on", "reviewed-good"}
    holding |= {"shared-new"}
    with store.session() as session:
        rows = {r.id: r for r in session.scalars(select(Inspection))}
    assert {i for i, r in rows.items() if r.blobs_pruned_at is None} == holding
    assert set(rows) == holding | {"good-old", "ng-expired", "undelivered"}
    assert rows["good-old"].map_sha is None and rows["good-old"].overlay_sha is None
    assert store.blobs.exists(shared.image_sha)
    assert not store.blobs.exists(stray)
    assert _dangling_and_orphans(store) == ([], [])
    assert (report.stripped, report.rows_deleted) == (4, 1)  # row-expired: both
    assert report.blob_files == len(list(store.blobs.files()))


def test_parts_waiting_for_central_keep_their_blobs_until_the_budget_drops_good_ones(
    tmp_path: Path,
) -> None:
    """Forwarding first; past the disk budget the good parts' blobs go, counted, rows stay."""
    store = Store.migrated(f"sqlite:///{tmp_path / 'local.db'}", tmp_path / "blobs")
    for name, verdict in (("good-waiting", "OK"), ("ng-waiting", "NG")):
        _add(store, name, 10, verdict=verdict, outbox=[central_entry(name, 1)])
    _add(store, "good-sent", 10)
    prune(store, CONFIG, now=NOW)
    assert _holding(store) == {"good-waiting", "ng-waiting"}  # good-sent: by age, as before

    alarm_only = dataclasses.replace(CONFIG, disk_budget_gb=1e-9, over_budget="alarm")
    report = prune(store, alarm_only, now=NOW)
    assert (report.dropped, report.alarm, _holding(store)) == (
        0,
        True,
        {"good-waiting", "ng-waiting"},
    )

    report = prune(store, dataclasses.replace(alarm_only, over_budget="drop_good_images"), now=NOW)
    assert (report.dropped, report.dropped_waiting, report.alarm) == (1, 1, True)
    assert _holding(store) == {"ng-waiting"}
    assert store.count_inspections() == 3
    assert _dangling_and_orphans(store) == ([], [])


def _holding(store: Store) -> set[str]:
    with store.session() as session:
        return set(
            session.scalars(select(Inspection.id).where(Inspection.blobs_pruned_at.is_(None)))
        )


def test_rollups_count_results_seen_after_their_rows_are_deleted(
    store_url: str, tmp_path: Path
) -> None:
    """Rollups are a record of results seen: retention deleting rows leaves the totals, and
    the pages reading rows (the review queue) show what is left without error."""
    store = Store.migrated(store_url, tmp_path / "blobs")
    _add(store, "ng-expired-row", 70, verdict="NG", score=0.9)
    _add(store, "ng-new", 1, verdict="NG", score=0.8)

    assert prune(store, CONFIG, now=NOW).rows_deleted == 1

    (health,) = queries.station_health(store)
    assert (health.total, health.ng) == (2, 2)
    assert sum(row.total for row in queries.volume_over_time(store)) == 2
    queue = queries.QueueQuery(product="brick")
    assert [row.id for row in queries.review_queue(store, queue)] == ["ng-new"]
    assert queries.count_review_queue(store, queue) == 1


def test_a_file_written_within_the_grace_period_is_not_swept(tmp_path: Path) -> None:
    store = Store.migrated(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "blobs")
    in_flight = store.blobs.put(b"row not committed yet", ".png")
    prune(store, RetentionConfig(default=POLICY, pause_seconds=0.0, grace_minutes=5), now=NOW)
    assert store.blobs.exists(in_flight)
    old = time.time() - 600
    os.utime(store.blobs.path(in_flight), (old, old))
    prune(store, RetentionConfig(default=POLICY, pause_seconds=0.0, grace_minutes=5), now=NOW)
    assert not store.blobs.exists(in_flight)


def test_a_painted_review_region_is_a_referenced_blob(tmp_path: Path) -> None:
    store = Store.migrated(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "blobs")
    _add(store, "ng", 1, verdict="NG")
    region = store.blobs.put(b"painted region", ".png")
    store.add_review("ng", label="defect", reviewer="alice", region_sha=region)
    store.add_review("ng", label="defect", reviewer="bob")  # superseded, still in the audit
    unused = store.blobs.put(b"no row names this", ".png")
    prune(store, CONFIG, now=NOW)
    assert store.blobs.exists(region) and not store.blobs.exists(unused)


def test_the_disk_budget_alarm_is_raised_before_the_budget_is_reached(tmp_path: Path) -> None:
    store = Store.migrated(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "blobs")
    _add(store, "good-new", 1)
    used = prune(store, CONFIG, now=NOW).used_bytes
    budget = used / 0.9 / 1024**3  # usage at 90 % of the budget
    below = RetentionConfig(default=POLICY, disk_budget_gb=budget * 2, pause_seconds=0.0)
    above = RetentionConfig(default=POLICY, disk_budget_gb=budget, pause_seconds=0.0)
    assert not prune(store, below, now=NOW).alarm
    assert prune(store, above, now=NOW).alarm


_PRUNE_SCRIPT = """
import sys, datetime as dt
from inspection.store.store import Store
from inspection.store.retention import KeepPolicy, RetentionConfig, prune
store = Store(sys.argv[1], sys.argv[2])
config = RetentionConfig(default=KeepPolicy(blob_days=7, kept_blob_days=30, row_days=60),
                         batch_size=20, pause_seconds=0.02, grace_minutes=0.0)
prune(store, config, now=dt.datetime(2026, 6, 1, 12, tzinfo=dt.timezone.utc))
"""


def test_prune_killed_mid_run_leaves_no_dangling_row_and_the_next_run_no_orphan(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    store = Store.migrated(url, tmp_path / "blobs")
    for i in range(600):
        _add(store, f"p{i:04d}", 10 + (i % 80), verdict="NG" if i % 7 == 0 else "OK")
    process = subprocess.Popen([sys.executable, "-c", _PRUNE_SCRIPT, url, str(store.blobs.root)])
    stripped = 0
    deadline = time.monotonic() + 60
    while stripped < 100 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
        with store.session() as session:
            stripped = session.scalar(
                select(func.count()).where(Inspection.blobs_pruned_at.is_not(None))
            )
    assert process.poll() is None, "prune finished before it could be killed: grow the store"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    dangling, orphans = _dangling_and_orphans(store)
    assert dangling == []  # rows first: a kill can leave files, never a row without its file
    assert orphans, "the kill left no work for the next run: the test proves nothing"

    prune(store, CONFIG, now=NOW)

    assert _dangling_and_orphans(store) == ([], [])
    assert not (store.blobs.root / ".trash").exists() or not any(
        (store.blobs.root / ".trash").iterdir()
    )


def test_store_prune_command_prunes_and_writes_the_gauges(
    station_config: Path, station_store: Store, tmp_path: Path
) -> None:
    import yaml
    from typer.testing import CliRunner

    from inspection.cli import app

    retention = {"default": {"blob_days": 1}, "disk_budget_gb": 1e-9, "grace_minutes": 0}
    (tmp_path / "retention.yaml").write_text(yaml.safe_dump(retention), encoding="utf-8")
    old = _add(station_store, "good-old", 3)
    _add(station_store, "good-new", 0, created_at=datetime.now(timezone.utc))

    prune = ["store", "prune", "--config", str(station_config)]
    result = CliRunner().invoke(app, [*prune, "--trust-clock"])  # the first: no record yet

    assert result.exit_code == 0, result.output
    assert "1 rows lost their blobs" in result.output and "storage alarm" in result.output
    assert station_store.get_inspection(old.id).blobs_pruned_at is not None
    gauges = (tmp_path / "storage.prom").read_text(encoding="utf-8")
    assert "inspection_storage_alarm 1.0" in gauges


def test_the_scheduler_runs_housekeeping_on_its_own_schedule(tmp_path: Path) -> None:
    from inspection.retrain.config import RetrainConfig
    from inspection.retrain.scheduler import Housekeeping, Scheduler

    runs: list[int] = []
    prune_job = Housekeeping("store prune", "0 * * * *", lambda: runs.append(1))
    scheduler = Scheduler(
        RetrainConfig(work_dir=tmp_path), lambda _p: None, housekeeping=(prune_job,)
    )
    start = datetime(2026, 6, 1, 10, 30).astimezone()
    scheduler.run_due(start)  # never ran: due at once
    scheduler.run_due(start + timedelta(minutes=20))  # 10:50, before 11:00
    scheduler.run_due(start + timedelta(minutes=31))  # 11:01
    assert len(runs) == 2
