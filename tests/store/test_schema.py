"""Schema changes are explicit: opening a store never migrates it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect as sql_inspect
from typer.testing import CliRunner

from inspection.cli import app
from inspection.store.store import Store, StoreError, schema_head

runner = CliRunner()


def test_opening_a_store_leaves_the_schema_alone(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "blobs")
    assert store.schema_revision() is None
    with pytest.raises(StoreError, match=r"has no schema.*run 'inspection db upgrade'"):
        store.check_schema()
    assert sql_inspect(store.engine).get_table_names() == []


def test_migrated_store_is_at_head(tmp_path: Path) -> None:
    store = Store.migrated(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "blobs")
    assert store.schema_revision() == schema_head()
    store.check_schema()
    assert "inspections" in sql_inspect(store.engine).get_table_names()


def test_db_status_and_upgrade_commands(station_config: Path) -> None:
    config = str(station_config)
    before = runner.invoke(app, ["db", "status", "--config", config])
    assert before.exit_code == 1 and "run 'inspection db upgrade'" in before.output
    upgraded = runner.invoke(app, ["db", "upgrade", "--config", config])
    assert upgraded.exit_code == 0, upgraded.output
    assert f"empty -> {schema_head()}" in upgraded.output
    again = runner.invoke(app, ["db", "upgrade", "--config", config])
    assert "nothing to do" in again.output
    after = runner.invoke(app, ["db", "status", "--config", config])
    assert after.exit_code == 0, after.output


def test_first_use_creates_the_schema_and_a_failure_leaves_no_file(tmp_path: Path) -> None:
    fresh = Store(f"sqlite:///{tmp_path / 'first.db'}", tmp_path / "blobs")
    fresh.ensure_schema()
    assert fresh.schema_revision() == schema_head()
    fresh.ensure_schema()  # repeatable
    broken = tmp_path / "broken.db"
    store = Store(f"sqlite:///{broken}", tmp_path / "blobs")
    store.migrate = lambda: (_ for _ in ()).throw(StoreError("disk full"))  # a failing upgrade
    with pytest.raises(StoreError, match="disk full"):
        store.ensure_schema()
    assert not broken.exists()


def test_users_command_creates_the_schema_of_the_site_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(
        f"store_url: sqlite:///{tmp_path / 'site.db'}\nblob_dir: {tmp_path / 'blobs'}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("INSPECTION_SITE_CONFIG", str(site))
    added = runner.invoke(
        app, ["users", "add", "alice", "--role", "admin", "--password-stdin"],
        input="a long enough password\n",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    listed = runner.invoke(app, ["users", "list"])
    assert "alice" in listed.output and (tmp_path / "site.db").is_file()
