"""A station refuses to start on a ``registry_dir`` that is not a folder, naming the key and
its absolute path (it used to read as "no live bundle; promote one first")."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from inspection.cli import app
from inspection.core.config import from_mapping
from inspection.core.errors import ConfigError
from inspection.line.config import load_line_config
from inspection.station.config import StationCoreConfig, check_registry_dir
from inspection.station.core import StationCore

CORE = {"products": ["brick"], "registry_dir": "var/nope", "allow_unsigned_bundles": True}
LINE = {"station_id": "cam-1", "camera": {"kind": "file", "path": "."}, "core": CORE}
COMMANDS = [
    ["serve"],
    ["watch", "--once"],
    ["station", "tune"],
    ["station", "run", "-c", "line.yaml"],
    ["station", "status", "-c", "line.yaml"],
]


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    Path("configs").mkdir()
    Path("configs/station.yaml").write_text(yaml.safe_dump({"core": CORE}))
    Path("line.yaml").write_text(yaml.safe_dump(LINE))
    return tmp_path


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_missing_registry_dir_stops_the_command_naming_key_and_path(
    site: Path, command: list[str]
) -> None:
    result = CliRunner().invoke(app, command)
    assert isinstance(result.exception, ConfigError), result.output
    message = str(result.exception)
    assert message.startswith(f"core: registry_dir {site / 'var' / 'nope'} is not a directory")
    assert "\n" not in message
    assert not (site / "var").exists()  # refused before the store or registry was touched


def test_loading_a_config_does_not_need_the_registry_yet(site: Path) -> None:
    config = load_line_config("line.yaml")  # `station sync` fills a registry that is not there
    (site / "var" / "nope").mkdir(parents=True)
    check_registry_dir(config.core)
    (site / "var" / "nope").rmdir()
    (site / "var" / "nope").write_text("a file")
    with pytest.raises(ConfigError, match=r"registry_dir .* is not a directory"):
        check_registry_dir(config.core)


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_the_station_core_itself_refuses_a_registry_dir_that_is_not_a_folder(
    site: Path, kind: str
) -> None:
    """Built in code (no CLI), the core gives the commands' message, before opening the store."""
    if kind == "file":
        Path("var").mkdir()
        Path("var/nope").write_text("a file")
    config = from_mapping(StationCoreConfig, CORE, where="core")
    with pytest.raises(ConfigError) as info:
        StationCore.build(config)
    assert str(info.value).startswith(
        f"core: registry_dir {site / 'var' / 'nope'} is not a directory"
    )
    assert not (site / "var" / "inspection.db").exists()  # the store was not opened
