"""Line-station config: out-of-range numbers are refused by name when the config loads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from inspection.core.errors import ConfigError
from inspection.line.config import load_line_config

BASE = {
    "station_id": "cam-1",
    "camera": {"kind": "file", "path": "/tmp"},
    "core": {
        "products": ["brick"],
        "store_url": "sqlite://",
        "blob_dir": "/tmp/b",
        "registry_dir": "/tmp/r",
        "allow_unsigned_bundles": True,
    },
}


def _load(tmp_path: Path, section: str, values: dict) -> None:
    data = dict(BASE)
    data[section] = {**data.get(section, {}), **values}
    path = tmp_path / "line.yaml"
    path.write_text(yaml.safe_dump(data))
    load_line_config(path)


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        ("publisher", {"batch": 0}, "publisher: batch must be >= 1, got 0"),
        ("publisher", {"poll_s": -1}, "publisher: poll_s must be > 0, got -1.0"),
        ("publisher", {"poll_s": 0}, "publisher: poll_s must be > 0, got 0.0"),
        ("publisher", {"backoff_initial_s": -0.5}, "0 < backoff_initial_s <= backoff_max_s"),
        ("publisher", {"backoff_max_s": -1}, "0 < backoff_initial_s <= backoff_max_s"),
        ("publisher", {"backoff_initial_s": 100, "backoff_max_s": 1}, "got 100.0 and 1.0"),
        ("camera", {"timeout_s": -5}, "camera: timeout_s must be > 0, got -5.0"),
        ("opcua", {"sampling_ms": -10}, "opcua: sampling_ms must be >= 0, got -10.0"),
        ("mqtt", {"port": 70000}, "mqtt: port must be in 1..65535, got 70000"),
        ("mqtt", {"port": 0}, "mqtt: port must be in 1..65535, got 0"),
    ],
)
def test_out_of_range_numbers_are_refused_by_name(
    tmp_path: Path, section: str, values: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        _load(tmp_path, section, values)


@pytest.mark.parametrize(
    ("section", "values"),
    [
        ("publisher", {"batch": 1, "poll_s": 0.01}),
        ("publisher", {"backoff_initial_s": 2, "backoff_max_s": 2}),
        ("opcua", {"sampling_ms": 0}),
    ],
)
def test_edge_values_in_range_load(tmp_path: Path, section: str, values: dict) -> None:
    _load(tmp_path, section, values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"metrics_port": 70000}, "line config: metrics_port must be in 1..65535, got 70000"),
        (
            {"sinks": [{"name": "mes", "kind": "mqtt", "port": -1}]},
            "sink 'mes': port must be in 1..65535, got -1",
        ),
        (  # the station's own record of each signed payload
            {"sinks": [{"name": "signed", "kind": "webhook", "url": "http://mes.example/r"}]},
            "sink names must be unique and not 'signed'",
        ),
    ],
)
def test_ports_out_of_range_are_refused_by_key(tmp_path: Path, values: dict, message: str) -> None:
    path = tmp_path / "line.yaml"
    path.write_text(yaml.safe_dump(BASE | values))
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_line_config(path)
    path.write_text(yaml.safe_dump(BASE | {"metrics_port": 65535, "mqtt": {"port": 1}}))
    assert load_line_config(path).metrics_port == 65535


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"station_id": "plc"}, "station_id 'plc' is the MQTT user of the PLC"),
        ({"station_id": "mes"}, "station_id 'mes' is the MQTT user of the MES"),
        ({"security": {"mode": "off"}}, "security.mode"),
        ({"security": {"mode": "none", "tls": False}}, "unknown key(s) 'tls'"),
    ],
)
def test_link_security_settings_are_checked(tmp_path: Path, values: dict, message: str) -> None:
    path = tmp_path / "line.yaml"
    path.write_text(yaml.safe_dump(BASE | values))
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_line_config(path)


def test_link_security_is_on_unless_written_off(tmp_path: Path) -> None:
    path = tmp_path / "line.yaml"
    path.write_text(yaml.safe_dump(BASE))
    assert load_line_config(path).security.mode == "sign_and_encrypt"
    path.write_text(yaml.safe_dump(BASE | {"security": {"mode": "none"}}))
    assert not load_line_config(path).security.on
