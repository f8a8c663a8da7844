"""``inspection models list``: each version's verdict beside its figures, and nothing cut off
in an 80-column log."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspection.cli import app
from inspection.cli.operating import train_verdict
from tests.conftest import TrainedProduct

pytestmark = pytest.mark.slow


def test_models_list_gives_each_version_the_verdict_train_gave_it_uncut(
    trained_patchcore: TrainedProduct, tmp_path: Path
) -> None:
    registry = trained_patchcore.registry
    (tmp_path / "site.yaml").write_text(f"registry_dir: {registry.root}\n", encoding="utf-8")
    args = ["models", "list", "--product", "brick", "--site", str(tmp_path / "site.yaml")]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "80"})

    assert result.exit_code == 0, result.output
    assert "…" not in result.output  # never cut with an ellipsis
    record = trained_patchcore.record
    word = train_verdict("brick", record.version, record.evaluation()).split(" brick/")[0]
    row = next(line for line in result.output.splitlines() if f" {record.version} " in line)
    cells = [cell.strip() for cell in row.split("│")]
    assert cells[1:4] == ["brick", record.version, record.model_kind]
    assert cells[4] == record.created_at[:16].replace("T", " ") and cells[8] == word
