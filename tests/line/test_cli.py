from __future__ import annotations

import sqlite3
from pathlib import Path

import yaml
from typer.testing import CliRunner

from inspection.cli import app
from inspection.store.store import Store

from .records import entries, inspection_fields


def test_station_status_shows_the_outbox_backlog_per_sink(tmp_path: Path) -> None:
    config = {
        "station_id": "cam-1",
        "core": {
            "products": ["brick"],
            "store_url": f"sqlite:///{tmp_path / 'line.db'}",
            "blob_dir": str(tmp_path / "blobs"),
            "registry_dir": str(tmp_path / "registry"),
            "allow_unsigned_bundles": True,
        },
        "camera": {"kind": "file", "path": str(tmp_path)},
        "sinks": [
            {"name": "mes", "kind": "mqtt"},
            {"name": "hook", "kind": "webhook", "url": "http://x/"},
        ],
    }
    path = tmp_path / "line.yaml"
    path.write_text(yaml.safe_dump(config))
    (tmp_path / "registry").mkdir()
    store = Store.migrated(config["core"]["store_url"], tmp_path / "blobs")
    for n in range(2):
        fields = inspection_fields(n)
        store.add_inspection(outbox=entries(fields, ("mes",)), **fields)
    store.engine.dispose()
    result = CliRunner().invoke(app, ["station", "status", "-c", str(path)], terminal_width=120)
    assert result.exit_code == 0, result.output
    mes = next(line for line in result.output.splitlines() if " mes " in line)
    hook = next(line for line in result.output.splitlines() if " hook " in line)
    assert mes.split("│")[2].strip() == "2" and hook.split("│")[2].strip() == "0"
    assert "brick: live bundle none" in result.output


def test_station_run_rejects_unknown_config_keys(tmp_path: Path) -> None:
    path = tmp_path / "line.yaml"
    path.write_text(
        yaml.safe_dump({"station_id": "cam-1", "core": {"products": ["brick"]}, "camra": {}})
    )
    result = CliRunner().invoke(app, ["station", "run", "-c", str(path)])
    assert result.exit_code != 0
    assert "camra" in str(result.exception)


def _status_config(tmp_path: Path) -> Path:
    core = {
        "products": ["brick"],
        "store_url": f"sqlite:///{tmp_path / 'db' / 'line.db'}",
        "blob_dir": str(tmp_path / "blobs"),
        "registry_dir": str(tmp_path / "registry"),
        "allow_unsigned_bundles": True,
    }
    config = {"station_id": "cam-1", "core": core, "camera": {"kind": "file", "path": "."}}
    (tmp_path / "registry").mkdir()
    path = tmp_path / "line.yaml"
    path.write_text(yaml.safe_dump({**config, "sinks": [{"name": "mes", "kind": "mqtt"}]}))
    return path


def test_station_status_creates_no_database(tmp_path: Path) -> None:
    path = _status_config(tmp_path)
    result = CliRunner().invoke(app, ["station", "status", "-c", str(path)], terminal_width=400)
    assert result.exit_code == 0, result.output
    db = tmp_path / "db" / "line.db"
    assert f"outbox: no results database at {db} yet" in result.output
    assert "brick: live bundle none" in result.output
    assert not db.exists() and not (tmp_path / "db").exists()


def test_station_status_does_not_migrate_an_empty_database(tmp_path: Path) -> None:
    path = _status_config(tmp_path)
    db = tmp_path / "db" / "line.db"
    db.parent.mkdir()
    sqlite3.connect(db).close()
    result = CliRunner().invoke(app, ["station", "status", "-c", str(path)], terminal_width=400)
    assert result.exit_code == 0, result.output
    assert "has no schema" in result.output and "inspection db upgrade" in result.output
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT name FROM sqlite_master").fetchall() == []


def test_station_status_names_the_link_security_and_shouts_when_it_is_off(tmp_path: Path) -> None:
    path = _status_config(tmp_path)
    secured = CliRunner().invoke(app, ["station", "status", "-c", str(path)], terminal_width=400)
    assert "line links: sign_and_encrypt (certificates and secrets in var/line-pki)" in (
        secured.output
    )
    config = yaml.safe_load(path.read_text()) | {"security": {"mode": "none"}}
    path.write_text(yaml.safe_dump(config))
    off = CliRunner().invoke(app, ["station", "status", "-c", str(path)], terminal_width=400)
    assert off.exit_code == 0, off.output
    assert "WARNING: LINE LINKS INSECURE (security.mode: none)" in off.output
