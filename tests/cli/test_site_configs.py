"""Commands given ``--site`` read and write that site's configs (its file's folder), not the
ones in the working directory, and say which folder they read."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspection.cli import app
from inspection.cli.console import configs_line
from inspection.core.config import SiteConfig, load_site_config
from inspection.core.errors import ConfigError, DatasetError

STATION = "core:\n  products: [widget]\n  allow_unsigned_bundles: true\n"


@pytest.fixture
def two_sites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(the working directory, with site A's configs/; site B's site file elsewhere)."""
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, name in ((a / "configs", "a"), (b, "b")):
        (folder / "products").mkdir(parents=True)
        (folder / "products" / "widget.yaml").write_text(f"data: {tmp_path / name / 'widget'}\n")
        (folder / "station.yaml").write_text(STATION)
        (folder / "site.yaml").write_text(f"registry_dir: {folder / 'var' / 'registry'}\n")
    monkeypatch.chdir(a)
    return a, b / "site.yaml"


def test_train_reads_the_product_config_of_the_site_it_is_given(
    tmp_path: Path, two_sites: tuple[Path, Path]
) -> None:
    _, site_b = two_sites
    result = CliRunner().invoke(app, ["train", "--product", "widget", "--site", str(site_b)])
    assert isinstance(result.exception, DatasetError), result.output
    assert str(result.exception) == f"dataset folder not found: {tmp_path / 'b' / 'widget'}"
    result = CliRunner().invoke(app, ["train", "--product", "widget"])  # the default site: A's
    assert str(result.exception) == f"dataset folder not found: {tmp_path / 'a' / 'widget'}"


def test_keys_init_pins_the_station_configs_of_the_site_it_is_given(
    two_sites: tuple[Path, Path],
) -> None:
    cwd, site_b = two_sites
    result = CliRunner().invoke(app, ["keys", "init", "--site", str(site_b)])
    assert result.exit_code == 0, result.output
    assert 'fingerprint: "sha256:' in (site_b.parent / "station.yaml").read_text()
    assert (cwd / "configs" / "station.yaml").read_text() == STATION  # site A's: untouched


def test_the_configs_line_names_the_folder_and_why(
    tmp_path: Path, two_sites: tuple[Path, Path]
) -> None:
    _, site_b = two_sites
    assert configs_line(load_site_config(site_b)) == f"configs: {tmp_path / 'b'} (site config)"
    assert configs_line(SiteConfig()) == f"configs: {tmp_path / 'a' / 'configs'} (no site file)"


@pytest.mark.parametrize(
    "command",
    [
        ["inspect", "bundle", "part.png"],
        ["export", "--product", "widget"],
        ["demo", "--skip", "data,train,export,inspect"],
    ],
    ids=lambda c: c[0],
)
def test_a_bad_refine_yaml_of_the_site_stops_the_command_at_its_start(
    two_sites: tuple[Path, Path], command: list[str]
) -> None:
    """Read once, first: not after the conversion and calibration of an export, nor when the
    bundle loads."""
    cwd, site_b = two_sites
    (cwd / "configs" / "refine.yaml").write_text("refine: {method: none}\n")  # site A's: fine
    (site_b.parent / "refine.yaml").write_text("refine:\n  metod: sam\n")
    result = CliRunner().invoke(app, [*command, "--site", str(site_b)])
    assert isinstance(result.exception, ConfigError), result.output
    assert str(result.exception).startswith(
        f"{site_b.parent / 'refine.yaml'}: refine: unknown key(s) 'metod'"
    )
    assert not (site_b.parent / "var").exists()  # nothing written for the site


def test_inspect_without_refinement_does_not_read_refine_yaml(
    two_sites: tuple[Path, Path],
) -> None:
    _, site_b = two_sites
    (site_b.parent / "refine.yaml").write_text("refine:\n  metod: sam\n")
    args = ["inspect", "bundle", "part.png", "--no-refine", "--site", str(site_b)]
    result = CliRunner().invoke(app, args)
    assert not isinstance(result.exception, ConfigError), result.output
