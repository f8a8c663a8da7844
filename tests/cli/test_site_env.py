"""``INSPECTION_SITE_CONFIG`` names the site of every command that takes ``--site`` (it was
read by the dashboard and ``users`` only); ``--site`` wins over it, and a site taken from the
variable is said on stderr."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from inspection.cli import app
from inspection.core.config import SITE_CONFIG_ENV
from inspection.core.errors import DatasetError
from inspection.core.registry import Registry

STATION = "core:\n  products: [widget]\n  allow_unsigned_bundles: true\n"


def _commands(command: object, path: tuple[str, ...] = ()) -> Iterator[tuple[str, object]]:
    children = getattr(command, "commands", None)
    if not children:
        yield " ".join(path), command
        return
    for name, child in children.items():
        yield from _commands(child, (*path, name))


def test_every_site_option_reads_the_variable_and_says_so_in_help() -> None:
    options = {
        name: param
        for name, command in _commands(typer.main.get_command(app))
        for param in command.params  # type: ignore[attr-defined]
        if "--site" in getattr(param, "opts", ())
    }
    assert {"train", "export", "retrain", "keys init", "inspect", "demo", "db upgrade",
            "models list", "registry serve", "users add", "dashboard"} <= set(options)  # fmt: skip
    assert {name for name, p in options.items() if p.envvar != SITE_CONFIG_ENV} == set()
    help_text = CliRunner().invoke(app, ["export", "--help"], env={"COLUMNS": "200"}).output
    assert "$INSPECTION_SITE_CONFIG, else configs/site.yaml" in help_text


@pytest.fixture
def two_sites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(site A's file, in the working directory's configs/; site B's file elsewhere)."""
    sites = []
    for folder, name in ((tmp_path / "a" / "configs", "a"), (tmp_path / "b", "b")):
        (folder / "products").mkdir(parents=True)
        (folder / "products" / "widget.yaml").write_text(f"data: {tmp_path / name / 'widget'}\n")
        (folder / "station.yaml").write_text(STATION)
        (folder / "site.yaml").write_text(
            f"registry_dir: {folder / 'registry'}\nstore_url: sqlite:///{folder / 'site.db'}\n"
        )
        sites.append(folder / "site.yaml")
    monkeypatch.chdir(tmp_path / "a")
    return sites[0], sites[1]


def test_train_reads_the_site_of_the_variable_and_site_wins(
    tmp_path: Path, two_sites: tuple[Path, Path]
) -> None:
    site_a, site_b = two_sites
    env = {SITE_CONFIG_ENV: str(site_b)}
    result = CliRunner().invoke(app, ["train", "--product", "widget"], env=env)
    assert isinstance(result.exception, DatasetError), result.output
    assert str(result.exception) == f"dataset folder not found: {tmp_path / 'b' / 'widget'}"
    assert f"site config: {site_b} (from INSPECTION_SITE_CONFIG)" in result.output
    given = ["train", "--product", "widget", "--site", str(site_a)]
    result = CliRunner().invoke(app, given, env=env)
    assert str(result.exception) == f"dataset folder not found: {tmp_path / 'a' / 'widget'}"
    assert "INSPECTION_SITE_CONFIG" not in result.output


def test_keys_init_follows_the_variable(two_sites: tuple[Path, Path]) -> None:
    site_a, site_b = two_sites
    registry = Registry(site_b.parent / "registry")
    registry.root.mkdir()
    env = {SITE_CONFIG_ENV: str(site_b)}
    result = CliRunner().invoke(app, ["keys", "init"], env=env)
    assert result.exit_code == 0, result.output
    assert 'fingerprint: "sha256:' in (site_b.parent / "station.yaml").read_text()
    assert (site_a.parent / "station.yaml").read_text() == STATION  # site A's: untouched
    assert (site_b.parent / "keys").is_dir() and not (site_a.parent / "keys").exists()


def test_db_config_overrides_the_variable_but_not_an_explicit_site(
    tmp_path: Path, two_sites: tuple[Path, Path]
) -> None:
    site_a, site_b = two_sites
    station = tmp_path / "station.yaml"
    station.write_text(STATION + f"  store_url: sqlite:///{tmp_path / 'station.db'}\n")
    env = {SITE_CONFIG_ENV: str(site_b)}
    result = CliRunner().invoke(app, ["db", "upgrade", "--config", str(station)], env=env)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "station.db").is_file() and not (site_b.parent / "site.db").exists()
    result = CliRunner().invoke(app, ["db", "upgrade"], env=env)
    assert result.exit_code == 0, result.output
    assert (site_b.parent / "site.db").is_file() and not (site_a.parent / "site.db").exists()
    assert "(from INSPECTION_SITE_CONFIG)" in result.output
    both = ["db", "upgrade", "--config", str(station), "--site", str(site_a)]
    result = CliRunner().invoke(app, both, env=env)
    assert result.exit_code != 0 and "not both" in result.output
