"""Report summaries: AUROC of trivial baselines and the summary command's files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from inspection.cli import app
from inspection.core.metrics import image_auroc
from inspection.data.dataset import load_mvtec
from inspection.data.summary import baseline_aurocs, summarise


@pytest.mark.parametrize(
    ("negatives", "positives", "expected"),
    [
        ([0, 1, 2], [3, 4], 1.0),
        ([3, 4], [0, 1, 2], 0.0),
        ([1, 2], [1, 2], 0.5),
        ([0, 2], [1], 0.5),
        ([1], [1, 1], 0.5),
    ],
)
def test_auroc(negatives: list[float], positives: list[float], expected: float) -> None:
    """The baselines' AUROC (``core.metrics.image_auroc``): ties count half."""
    labels = [0] * len(negatives) + [1] * len(positives)
    assert image_auroc(np.asarray(negatives + positives), np.asarray(labels)) == expected


def test_auroc_without_one_class_is_none() -> None:
    assert image_auroc(np.asarray([1.0]), np.asarray([1])) is None


def test_baselines_on_demo_stay_near_chance(tiny_product: Path) -> None:
    result = baseline_aurocs(load_mvtec(tiny_product))
    assert set(result) == {"mean_brightness", "brightness_std"}
    assert all(0.15 < v < 0.85 for v in result.values()), result


def test_summary_command_writes_json_and_markdown(tiny_product: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["data", "summary", str(tiny_product), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data["brick"]["check"]["ok"] is True
    assert data["brick"]["check"]["counts"]["train"] == {"good": 24}
    markdown = (tmp_path / "summary.md").read_text()
    assert "| brick | 24 | 6 | 12 | crack 3, hole 3, scratch 3, stain 3 | 0 |" in markdown


def test_summary_reads_a_12_bit_dataset_at_its_image_bits(
    twelve_bit_pair: tuple[Path, Path],
) -> None:
    """The summary's check and baselines read 16-bit images at the default high byte: a
    12-bit product was told to set image_bits it had, and its baselines were measured on
    near-black images."""
    grey, twelve = (load_mvtec(root) for root in twelve_bit_pair)
    declared = summarise([twelve], {twelve.name: 12})[twelve.name]
    assert declared["baselines"] == baseline_aurocs(grey)
    assert not [p for p in declared["check"]["problems"] if p["code"] == "narrow_16_bit"]
    undeclared = summarise([twelve])[twelve.name]
    assert [p["code"] for p in undeclared["check"]["problems"]] == ["narrow_16_bit"]


def test_summary_command_takes_image_bits(
    twelve_bit_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    _, twelve = twelve_bit_pair
    args = ["data", "summary", str(twelve), "--out", str(tmp_path), "--image-bits", "12"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data[twelve.name]["check"]["problems"] == []
