"""``core.input_check`` (refuse | warn | off) in both station configs, and its refusal's codes:
HTTP 422 and PLC error code 8, like an unaligned part."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from inspection.core.errors import ConfigError
from inspection.line.config import load_line_config
from inspection.line.handshake import Answer, ErrorCode, ResultCode
from inspection.service.config import load_station_config
from inspection.service.errors import http_error
from inspection.station.errors import InputOutOfDomain, answer_to

STATION = """\
core:
  products: [brick]
  allow_unsigned_bundles: true
{line}
"""
REPO = Path(__file__).resolve().parents[2]


def _station(tmp_path: Path, line: str) -> Path:
    path = tmp_path / "station.yaml"
    path.write_text(STATION.format(line=line))
    return path


@pytest.mark.parametrize(
    ("line", "expected"),
    [("", "refuse"), ("  input_check: warn", "warn"), ('  input_check: "off"', "off")],
)
def test_input_check_is_refuse_by_default_and_can_be_switched(
    tmp_path: Path, line: str, expected: str
) -> None:
    assert load_station_config(_station(tmp_path, line)).core.input_check == expected


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("  input_check: maybe", "core.input_check: must be one of ['refuse', 'warn', 'off'], "
         "got 'maybe'"),
        ("  input_check: off", "got False (YAML reads a bare off as false: write \"off\" in "
         "quotes)"),
        ("  input_check: 1", "got 1"),
    ],
)  # fmt: skip
def test_a_bad_input_check_is_a_config_error_naming_the_key(
    tmp_path: Path, line: str, message: str
) -> None:
    path = _station(tmp_path, line)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_station_config(path)


def test_the_line_station_reads_the_same_key(tmp_path: Path) -> None:
    text = (REPO / "configs" / "line.yaml").read_text()
    path = tmp_path / "line.yaml"
    assert "  input_check: refuse " in text  # the shipped configs state the default
    path.write_text(text.replace("  input_check: refuse ", "  input_check: warn ", 1))
    assert load_line_config(path).core.input_check == "warn"
    assert load_station_config(REPO / "configs" / "station.yaml").core.input_check == "refuse"


def test_a_refused_input_is_an_error_answer_never_a_verdict() -> None:
    refusal = InputOutOfDomain("grey image (its three channels are equal: channel spread 0.0)")
    code = answer_to(refusal).plc_code
    assert code == ErrorCode.OUT_OF_DOMAIN == 8 and http_error(refusal).status == 422
    answer = Answer("r1", int(code), refusal.message, product="brick")
    assert answer.result == ResultCode.ERROR and answer.verdict is None
