"""A line PC whose clock jumps ahead prunes nothing it should keep (``store.trusted_clock``)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from inspection.cli import app
from inspection.store.retention import RetentionConfig, prune
from inspection.store.store import Store
from inspection.store.trusted_clock import STATE, trusted_now
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
    assert abs(trusted_now(store, skew_s=300, jump_days=7) - now) < timedelta(seconds=5)
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
    (store.blobs.root / STATE).write_text(json.dumps(state))
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


def test_an_idle_line_is_aged_no_further_than_its_newest_row(store: Store) -> None:
    newest = datetime.now(timezone.utc)
    later = trusted_now(store, skew_s=300, jump_days=7, wall=newest + YEAR)  # no record yet
    assert later is not None and later - newest <= timedelta(seconds=301)
