"""``inspection export`` refuses out-of-range options as usage errors, before any work; its
gate table is printed uncut."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspection.cli import app
from tests.conftest import TrainedProduct


@pytest.mark.parametrize("size", ["0", "-5"])
def test_calibration_size_below_one_is_a_usage_error(size: str) -> None:
    args = ["export", "--product", "brick", "--calibration-size", size]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--calibration-size'" in result.output


@pytest.mark.slow
def test_the_gate_table_is_not_cut_off_a_terminal(
    trained_patchcore: TrainedProduct, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a log or pipe (80 columns, no terminal) the bundle column read ``washer/…``."""
    registry = shutil.copytree(trained_patchcore.registry.root, tmp_path / "var" / "registry")
    (tmp_path / "site.yaml").write_text(f"registry_dir: {registry}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    args = ["export", "--product", "brick", "--precision", "fp32", "--site", "site.yaml"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert " brick/v0001-fp32 " in result.output and " region recall " in result.output
