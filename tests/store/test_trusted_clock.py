"""A line PC whose clock jumps ahead prunes nothing it should keep (``store.trusted_clock``)."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from inspection.cli import app
from inspection.store.models import PruneClock
from inspection.store.retention import RetentionConfig, prune
from inspection.store.store import Store
from inspection.store.trusted_clock import LEGACY_STATE, trusted_now
from tests.store.test_retention import _add

YEAR = timedelta(days=365)


@pytest.fixture
def store(station_store: Store, tmp_path: Path) -> Store:
    """The station's store holding three rows made now; its retention keeps rows 90 days."""
    retention = {"default": {"blob_days": 30, "row_days": 90}, "grace_minutes": 0}
    (tmp_path / "retention.yaml").write_text(yaml.safe_dump(retention), encoding="utf-8")
    for name in ("a", "b", "c"):
        _add(station_store, name, 0, created_at=datetime.now(timezone.utc))
    return station_store


def test_a_clock_a_year_ahead_in_the_same_boot_ages_nothing(store: Store) -> None:
    now = datetime.now(timezone.utc)
    first = trusted_now(store, skew_s=300, jump_days=7, trust_clock=True)  # makes the record
    assert first is not None and abs(first - now) < timedelta(seconds=5)
    jumped = trusted_now(store, skew_s=300, jump_days=7, wall=now + YEAR)
    assert jumped is not None and jumped - now < timedelta(minutes=1)  # the monotonic time
    report = prune(store, RetentionConfig(), now=jumped)
    assert (report.rows_deleted, report.stripped) == (0, 0)
    assert store.count_inspections() == 3


def test_a_clock_a_year_ahead_after_a_restart_is_refused_until_trusted(
    store: Store, station_config: Path, tmp_path: Path
) -> None:
    a_year_back = datetime.now(timezone.utc) - YEAR  # the last prune, as the clock now reads
    state = {"wall": a_year_back.isoformat(), "boot": "another boot", "monotonic": 0.0}
    legacy = store.blobs.root / LEGACY_STATE  # an earlier version's record, read once
    legacy.write_text(json.dumps(state))
    refused = CliRunner().invoke(app, ["store", "prune", "--config", str(station_config)])
    assert refused.exit_code == 1 and "REFUSED" in refused.output
    assert store.count_inspections() == 3
    gauges = (tmp_path / "storage.prom").read_text(encoding="utf-8")
    assert "inspection_prune_clock_refused 1.0" in gauges

    trusted = CliRunner().invoke(
        app, ["store", "prune", "--config", str(station_config), "--trust-clock"]
    )
    assert trusted.exit_code == 0, trusted.output
    assert store.count_inspections() == 3  # the rows are new by the trusted clock too
    assert not legacy.exists()  # moved into the store's row
    with store.session() as session:
        assert session.get(PruneClock, 1).wall.year == datetime.now(timezone.utc).year


def test_without_a_record_a_store_with_rows_is_not_pruned(
    store: Store, station_config: Path
) -> None:
    """#92: the first prune after an upgrade (or a restore that skipped the dot file) with the
    clock a year ahead: refused, 3 of 3 rows kept; a row stored under that clock after a trusted
    prune does not move the cap either."""
    wall = datetime.now(timezone.utc) + YEAR
    assert trusted_now(store, skew_s=300, jump_days=7, wall=wall) is None
    refused = CliRunner().invoke(app, ["store", "prune", "--config", str(station_config)])
    assert refused.exit_code == 1 and "REFUSED" in refused.output
    assert store.count_inspections() == 3
    trusted = trusted_now(store, skew_s=300, jump_days=7, trust_clock=True)
    assert trusted is not None
    _add(store, "ahead", 0, created_at=wall)  # stored while the clock was a year ahead
    later = trusted_now(store, skew_s=300, jump_days=7, wall=wall, trust_clock=True)
    assert later is not None and later - trusted <= timedelta(seconds=301)  # not the stray row
    report = prune(store, RetentionConfig(), now=later)
    assert report.rows_deleted == 0 and store.count_inspections() == 4


def test_an_idle_line_is_aged_no_further_than_its_newest_row(store: Store) -> None:
    newest = datetime.now(timezone.utc)
    trusted_now(store, skew_s=300, jump_days=7, trust_clock=True)  # the record
    later = trusted_now(store, skew_s=300, jump_days=7, wall=newest + YEAR, trust_clock=True)
    assert later is not None and later - newest <= timedelta(seconds=301)


def test_the_record_survives_a_restore_of_the_database(store_url: str, tmp_path: Path) -> None:
    """#92: the record is a row (migration 0018), not a file beside the blobs: the database
    restored on a new PC (another blob folder, another boot) prunes on a checked clock without
    ``--trust-clock``, refuses one a year ahead, and a row stored a year ahead still does not
    move the cap. SQLite: restored from an online backup; PostgreSQL: the same database."""
    store = Store.migrated(store_url, tmp_path / "blobs")
    for name in ("a", "b", "c"):
        _add(store, name, 0, created_at=datetime.now(timezone.utc))
    trusted = trusted_now(store, skew_s=300, jump_days=7, trust_clock=True)
    assert trusted is not None and not (store.blobs.root / LEGACY_STATE).exists()
    if store_url.startswith("sqlite"):
        backup = tmp_path / "restored.db"
        source = sqlite3.connect(store_url.removeprefix("sqlite:///"))
        with sqlite3.connect(backup) as target:
            source.backup(target)
        source.close()
        store_url = f"sqlite:///{backup}"
    restored = Store.migrated(store_url, tmp_path / "new-pc-blobs")
    with restored.session() as session:
        session.get(PruneClock, 1).boot = "the old PC's boot"
    now = datetime.now(timezone.utc)
    checked = trusted_now(restored, skew_s=300, jump_days=7, wall=now)
    assert checked is not None and abs(checked - now) < timedelta(minutes=6)
    with restored.session() as session:
        session.get(PruneClock, 1).boot = "the old PC's boot"
    assert trusted_now(restored, skew_s=300, jump_days=7, wall=now + YEAR) is None
    _add(restored, "ahead", 0, created_at=now + YEAR)
    later = trusted_now(restored, skew_s=300, jump_days=7, wall=now + YEAR, trust_clock=True)
    assert later is not None and later - now <= timedelta(seconds=301)
    assert prune(restored, RetentionConfig(), now=later).rows_deleted == 0
    assert restored.count_inspections() == 4
