"""``inspection demo`` on the tiny product: one progress display per step, a closing table,
library chatter in the log file instead of on the screen."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspection.cli import app

pytestmark = pytest.mark.slow


def test_demo_screen_is_readable_and_logs_go_to_a_file(tiny_product: Path, tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(
        f"registry_dir: {tmp_path / 'var' / 'registry'}\nreports_dir: {tmp_path / 'reports'}\n"
        f"datasets_dir: {tiny_product.parent}\n"
    )
    args = ["demo", "--products", "brick", "--models", "patchcore", "--skip", "export,inspect"]
    args += ["--set", "image_size=[64, 64]", "--set", "coreset_sampling_ratio=0.1"]
    result = CliRunner().invoke(app, [*args, "--site", str(site)])

    assert result.exit_code == 0, result.output
    logs = sorted((tmp_path / "var" / "logs").glob("demo-*.log"))
    assert len(logs) == 1 and f"warnings: {logs[0]}" in result.output
    assert "inspection dashboard" in result.output and "1/1" in result.output
    for chatter in ("GPU available", "litlogger", "FutureWarning", "Trainer.fit"):
        assert chatter not in result.output, chatter
    assert "registered brick/v0001" in logs[0].read_text()


def test_demo_plan_trains_stfpm_on_brick_only_unless_models_are_given() -> None:
    from inspection.cli.demo import plan_models

    assert plan_models(["brick", "grass", "gravel"], None) == {
        "brick": ("patchcore", "stfpm"),
        "grass": ("patchcore",),
        "gravel": ("patchcore",),
    }
    assert plan_models(["weave"], None) == {"weave": ("patchcore",)}
    assert plan_models(["brick", "grass"], "stfpm, padim") == {
        "brick": ("stfpm", "padim"),
        "grass": ("stfpm", "padim"),
    }


def test_demo_quantizes_every_product() -> None:
    """INT8 beside FP32 on every product, bf16 too on the first where the CPU runs it."""
    from inspection.cli.demo import demo_precisions

    products = ["brick", "grass", "gravel"]
    assert demo_precisions("brick", products)[0] == "fp32"
    assert "int8" in demo_precisions("brick", products)
    assert demo_precisions("grass", products) == demo_precisions("gravel", products)
    assert demo_precisions("gravel", products) == ("fp32", "int8")


def test_the_demo_gate_line_gives_misses_in_counts_like_false_rejects() -> None:
    """It once printed 'false reject 0/42 vs FP32 0/42, miss 0.049 vs 0.049': a fraction
    beside counts."""
    from dataclasses import replace

    from inspection.cli.demo import gate_text
    from inspection.core.export_gate import BundleFigures, GateRecord, GateTolerances

    fp32 = BundleFigures(
        false_reject_rate=0.0, miss_rate=7 / 144, image_auroc=0.99, pixel_auroc=None,
        aupro=None, region_recall=None, ng_without_region=0, n_good=42, n_defective=144,
    )  # fmt: skip
    int8 = replace(fp32, false_reject_rate=1 / 42, miss_rate=8 / 144)
    gate = GateRecord(True, int8, fp32, GateTolerances())
    assert gate_text(gate) == "passed (false reject 1/42 vs FP32 0/42, miss 8/144 vs FP32 7/144)"
