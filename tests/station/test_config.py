"""The station core's config section: pinning the site key into a config file keeps it valid."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from inspection.cli import app
from inspection.line.config import load_line_config
from inspection.service.config import load_station_config
from inspection.station.config import pin_public_key

REPO = Path(__file__).resolve().parents[2]

UNSIGNED = """\
# a development station
core:                 # shared section
  products: [brick]
  allow_unsigned_bundles: true   # no key yet
port: 8081
"""


def test_pinning_replaces_allow_unsigned_and_keeps_comments(tmp_path: Path) -> None:
    path = tmp_path / "station.yaml"
    path.write_text(UNSIGNED)
    assert load_station_config(path).core.allow_unsigned_bundles
    assert pin_public_key(path, "keys/site.pub") is True
    config = load_station_config(path)
    assert config.core.bundle_public_key == Path("keys/site.pub") and config.port == 8081
    assert not config.core.allow_unsigned_bundles
    assert "# a development station" in path.read_text() and "# no key yet" in path.read_text()
    assert pin_public_key(path, "keys/site.pub") is False
    assert pin_public_key(path, "other/site.pub") is True
    assert load_station_config(path).core.bundle_public_key == Path("other/site.pub")


def test_keys_init_pins_the_named_configs(tmp_path: Path) -> None:
    station, line = tmp_path / "station.yaml", tmp_path / "line.yaml"
    station.write_text(UNSIGNED)
    line.write_text((REPO / "configs" / "line.yaml").read_text())
    result = CliRunner().invoke(
        app, ["keys", "init", "--dir", str(tmp_path / "keys"), "-c", str(station), "-c", str(line)]
    )
    assert result.exit_code == 0, result.output
    public = tmp_path / "keys" / "site-signing.pub"
    assert load_station_config(station).core.bundle_public_key == public
    assert load_line_config(line).core.bundle_public_key == public
