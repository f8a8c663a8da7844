"""The station core's config section: pinning the site keys into a config file keeps it valid."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspection.cli import app
from inspection.core.errors import ConfigError
from inspection.core.signing import PinnedKey, fingerprint, load_public_key
from inspection.line.config import load_line_config
from inspection.service.config import load_station_config
from inspection.station.config import Trust, write_trust

REPO = Path(__file__).resolve().parents[2]

UNSIGNED = """\
# a development station
core:                 # shared section
  products: [brick]
  allow_unsigned_bundles: true   # no key yet
port: 8081
"""


def _pin(fingerprint: str = "sha256:" + "a" * 64, path: str = "keys/site.pub") -> PinnedKey:
    return PinnedKey(fingerprint, Path(path))


def test_pinning_replaces_allow_unsigned_and_keeps_comments(tmp_path: Path) -> None:
    path = tmp_path / "station.yaml"
    path.write_text(UNSIGNED)
    assert load_station_config(path).core.allow_unsigned_bundles
    assert write_trust(path, Trust((_pin(),))) is True
    config = load_station_config(path)
    assert config.core.signing_keys == (_pin(),) and config.port == 8081
    assert not config.core.allow_unsigned_bundles
    assert "# a development station" in path.read_text() and "# no key yet" in path.read_text()
    assert write_trust(path, Trust((_pin(),))) is False
    other = _pin("sha256:" + "b" * 64, "other/site.pub")
    assert write_trust(path, Trust((other,), ("brick/v0001-fp32",))) is True
    config = load_station_config(path)
    assert config.core.signing_keys == (other,) and config.core.revoked == ("brick/v0001-fp32",)


def test_keys_init_pins_the_named_configs(tmp_path: Path) -> None:
    station, line = tmp_path / "station.yaml", tmp_path / "line.yaml"
    station.write_text(UNSIGNED)
    shipped = (REPO / "configs" / "line.yaml").read_text()
    line.write_text(shipped)
    result = CliRunner().invoke(
        app, ["keys", "init", "--dir", str(tmp_path / "keys"), "-c", str(station), "-c", str(line)]
    )
    assert result.exit_code == 0, result.output
    public = tmp_path / "keys" / "site-signing.pub"
    dashboard = tmp_path / "keys" / "dashboard" / "decision-signing.pub"
    expected = (
        PinnedKey(fingerprint(load_public_key(public)), public, "bundles"),
        PinnedKey(fingerprint(load_public_key(dashboard)), dashboard, "decisions"),
    )
    assert load_station_config(station).core.signing_keys == expected
    assert load_line_config(line).core.signing_keys == expected
    # the shipped config names its trust file: the pins went there, the config is as shipped
    assert (
        line.read_text() == shipped and "signing_keys" in (tmp_path / "site-trust.yaml").read_text()
    )


def test_a_config_with_a_trust_file_keeps_no_pins_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "station.yaml"
    path.write_text(
        "core:\n  products: [brick]\n  trust_file: trust.yaml\n  signing_keys:\n"
        f"    - {{fingerprint: {_pin().fingerprint}, path: keys/site.pub}}\n"
    )
    with pytest.raises(ConfigError, match=r"live in trust_file trust\.yaml; move signing_keys"):
        load_station_config(path)
