"""Shared by the store tests: a station whose SQLite store, blobs and registry are in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from inspection.store.store import Store


@pytest.fixture
def station_config(tmp_path: Path) -> Path:
    """``station.yaml`` for ``brick`` (unsigned bundles allowed); its store is not created."""
    (tmp_path / "registry").mkdir()
    core = {
        "store_url": f"sqlite:///{tmp_path / 'station.db'}",
        "blob_dir": str(tmp_path / "blobs"),
        "registry_dir": str(tmp_path / "registry"),
        "products": ["brick"],
        "allow_unsigned_bundles": True,
    }
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump({"core": core}), encoding="utf-8")
    return path


@pytest.fixture
def station_store(station_config: Path) -> Store:
    """The store ``station_config`` names, migrated to the schema's head."""
    core = yaml.safe_load(station_config.read_text(encoding="utf-8"))["core"]
    return Store.migrated(core["store_url"], core["blob_dir"])
