"""``inspection export`` refuses out-of-range options as usage errors, before any work."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from inspection.cli import app


@pytest.mark.parametrize("size", ["0", "-5"])
def test_calibration_size_below_one_is_a_usage_error(size: str) -> None:
    args = ["export", "--product", "brick", "--calibration-size", size]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--calibration-size'" in result.output
