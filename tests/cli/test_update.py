"""``inspection train --update``: an ``--images`` path that is not a folder is a usage error,
not "nothing to do"."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspection.cli import app


@pytest.mark.parametrize(
    ("name", "reason"), [("mistyped", "does not exist"), ("afile.png", "is not a folder")]
)
def test_images_must_be_a_folder(tmp_path: Path, name: str, reason: str) -> None:
    (tmp_path / "afile.png").write_bytes(b"")
    site = tmp_path / "site.yaml"
    site.write_text(f"registry_dir: {tmp_path / 'registry'}\n")
    images = tmp_path / name
    args = ["train", "--update", "brick", "--images", str(images), "--site", str(site)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.output
    assert f"Invalid value for --images: {images} {reason}" in result.output
    assert "nothing to do" not in result.output
