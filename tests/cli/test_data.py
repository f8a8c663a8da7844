"""``inspection data``: output paths that cannot be written stop the command before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspection.cli import app


@pytest.mark.parametrize(
    ("command", "option", "target", "message"),
    [
        ("check", "--json", "afile/check.json", "afile is a file, not a folder"),
        ("check", "--json", ".", "is a folder, not a file"),
        ("sheet", "--out", "afile/sheet.png", "afile is a file, not a folder"),
        ("summary", "--out", "afile", "afile is a file, not a folder"),
        ("summary", "--out", "afile/sub", "cannot create"),
    ],
)
def test_unwritable_outputs_stop_before_the_dataset_is_read(
    tmp_path: Path, command: str, option: str, target: str, message: str
) -> None:
    (tmp_path / "afile").write_text("mine")
    missing = tmp_path / "no-such-dataset"  # reading it would fail with another message
    args = ["data", command, str(missing), option, str(tmp_path / target)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.output
    assert f"Invalid value for {option}" in result.output and message in result.output
    assert "Traceback" not in result.output
    assert (tmp_path / "afile").read_text() == "mine"
