"""Ports out of 1..65535 are refused up front (config key or CLI option), not by a traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspection.cli import app
from inspection.core.errors import ConfigError
from inspection.service.config import load_station_config

STATION = """\
core: {products: [brick], store_url: 'sqlite://', allow_unsigned_bundles: true}
port: PORT
"""


@pytest.mark.parametrize("port", [0, -1, 65536, 70000])
def test_station_config_port_out_of_range_is_refused(tmp_path: Path, port: int) -> None:
    path = tmp_path / "station.yaml"
    path.write_text(STATION.replace("PORT", str(port)))
    message = f"station config: port must be in 1..65535, got {port}"
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_station_config(path)


def test_station_config_port_edges_load(tmp_path: Path) -> None:
    path = tmp_path / "station.yaml"
    for port in (1, 65535):
        path.write_text(STATION.replace("PORT", str(port)))
        assert load_station_config(path).port == port


@pytest.mark.parametrize("command", [["serve"], ["registry", "serve"]])
def test_port_option_out_of_range_is_a_usage_error(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--port", "70000"], env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--port'" in result.output and "65535" in result.output
