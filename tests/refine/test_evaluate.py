"""``inspection refine evaluate`` end to end on the tiny product and its FP32 bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from inspection.cli import app
from inspection.refine.evaluate import pixel_scores


@pytest.mark.slow
def test_evaluate_writes_results_and_summary(fp32_bundle: Path, tiny_product: Path, tmp_path):
    out = tmp_path / "report"
    args = ["refine", "evaluate", "--bundle", str(fp32_bundle), "--dataset", str(tiny_product)]
    result = CliRunner().invoke(app, [*args, "--methods", "grabcut", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text())
    product = data["products"][tiny_product.name]
    assert product["images"] == 6 + 4 * 3 and product["defective_images"] == 12
    assert set(product["methods"]) == {"raw", "grabcut"}
    raw, grabcut = product["methods"]["raw"], product["methods"]["grabcut"]
    for entry in (raw, grabcut):
        scores = entry["quality"]["defective_images"]
        assert 0.0 <= scores["iou"] <= scores["f1"] <= 1.0
        assert entry["quality"]["aupro"] is None or 0.0 <= entry["quality"]["aupro"] <= 1.0
    assert grabcut["latency"]["ng_images"] == product["ng_images"]
    if product["ng_images"]:
        assert grabcut["latency"]["mean_ms"] > 0
        assert sum(grabcut["mask_sources"].values()) == product["ng_images"]
    summary = (out / "summary.md").read_text()
    assert "| brick | grabcut |" in summary and "Added latency" in summary


@pytest.mark.slow
def test_unknown_method_is_refused(fp32_bundle: Path, tiny_product: Path, tmp_path) -> None:
    args = ["refine", "evaluate", "--bundle", str(fp32_bundle), "--dataset", str(tiny_product)]
    result = CliRunner().invoke(app, [*args, "--methods", "magic", "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert "unknown refiner 'magic'" in str(result.exception)


@pytest.mark.parametrize(
    ("pred", "gt", "expected"),
    [
        (
            [[1, 1, 0, 0]],
            [[1, 0, 0, 0]],
            {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "iou": 0.5},
        ),
        ([[0, 0, 0, 0]], [[1, 1, 0, 0]], {"precision": 0.0, "recall": 0.0, "f1": 0.0, "iou": 0.0}),
        ([[0, 0]], [[0, 0]], {"precision": None, "recall": None, "f1": None, "iou": None}),
    ],
)
def test_pixel_scores_table(pred, gt, expected) -> None:
    scores = pixel_scores([np.array(pred, bool)], [np.array(gt, bool)])
    assert scores == pytest.approx(expected) if expected["f1"] is not None else scores == expected
