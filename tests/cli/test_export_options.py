"""``inspection export`` refuses out-of-range options as usage errors, before any work; its
gate table is printed uncut."""

from __future__ import annotations

import dataclasses
import re
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
    registry = shutil.copytree(  # the versions only: a session fixture may have exported v0001
        trained_patchcore.registry.root, tmp_path / "var" / "registry",
        ignore=shutil.ignore_patterns("bundles"),
    )  # fmt: skip
    (tmp_path / "site.yaml").write_text(f"registry_dir: {registry}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    args = ["export", "--product", "brick", "--precision", "fp32", "--site", "site.yaml"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert " brick/v0001-fp32 " in result.output and " region recall " in result.output
    said = " ".join(result.output.split())  # 3 held-out parts a kind show no 10 % miss bound
    last = said[said.index("NOT LINE-READY brick/v0001-fp32: ") :]  # the verdict last
    assert re.search(r"\d+ crack held out \(\d+ missed\)|misses \d+ of \d+ crack", last)
    assert re.search(
        r"Next: (to miss fewer \w|hold out \d+ \w+ images to show it \(\d+ now\): \d+ in test/)",
        last,
    )
    assert (
        "UNSIGNED: stations that pin a key refuse brick/v0001-fp32. Next: inspection keys " in last
    )
    assert last.endswith("inspection keys init, then export again"), said


@pytest.mark.parametrize("crack_missed", [0, 40])
def test_export_judges_line_readiness_as_the_demo_does(tmp_path: Path, crack_missed: int) -> None:
    """A bundle that passes its gate (as good as FP32) but misses every crack, FP32 too, was
    reported "gate passed" only; its verdict now says it is NOT LINE-READY."""
    from bench._shared import write_mean_bundle
    from inspection.core.bundle import read_bundle_metadata
    from inspection.core.export_gate import BundleFigures, ExportRecord, GateRecord
    from inspection.runtime.self_check import recorded_check

    figures = BundleFigures(
        0.0, crack_missed / 80, 0.9, None, None, None, 0, n_good=60, n_defective=80
    )
    kinds = {"crack": (40, crack_missed), "stain": (40, 0)}
    per_defect = {
        kind: {"n_good": 60, "n_defective": n, "miss_rate": missed / n}
        for kind, (n, missed) in kinds.items()
    }
    metrics = ExportRecord(gate=GateRecord(True, figures, figures)).to_mapping()
    bundle = write_mean_bundle(
        tmp_path / "b", input_size=(32, 32), product="grass",
        metrics=metrics | {"overall": {"n_good": 60}, "per_defect": per_defect},
    )  # fmt: skip

    said = recorded_check(read_bundle_metadata(bundle)).readiness().line("inspection serve")
    if crack_missed:
        assert said.startswith(
            "NOT LINE-READY grass/v0001-fp32: misses 40 of 40 crack (100%; up to 100% at 95 %"
        )
        assert "stain" not in said.split("Next:")[0].split("(crack")[0]
    else:
        assert said == (
            "LINE-READY grass/v0001-fp32: rejects 0 of 60 good held-out parts, misses 0 of 80 "
            "defects (crack 0/40, stain 0/40). Next: inspection serve"
        )


def test_a_gate_refusal_exits_3_not_2_with_its_one_line(capsys: pytest.CaptureFixture) -> None:
    """A refused bundle is a measured outcome, told apart from a usage error (exit code 2)."""
    import typer

    from inspection.cli.export import EXIT_GATE_REFUSED, _gate_refusal_exits
    from inspection.core.export_gate import GateRefusal, GateTolerances, check_gate
    from tests.core.test_export_gate import FP32, INT8

    decision = check_gate(INT8, FP32, GateTolerances())
    with pytest.raises(typer.Exit) as exited, _gate_refusal_exits(Path("var/logs/export.log")):
        raise GateRefusal(decision.message("brick/v0001-int8") + "; not registering it")
    assert exited.value.exit_code == EXIT_GATE_REFUSED == 3
    said = " ".join(capsys.readouterr().err.split())
    assert said.startswith("export gate: brick/v0001-int8 refused: miss_rate 0.125 vs FP32 0.000")
    assert "library logs and warnings: var/logs/export.log" in said


def test_export_help_names_its_exit_codes() -> None:
    help_text = CliRunner().invoke(app, ["export", "--help"], env={"COLUMNS": "200"}).output
    said = " ".join(help_text.split())
    assert "Exit codes: 0 registered, 2 a usage or setup error, 3 the gate refused" in said
    assert "(else exit code 3)" in said


@pytest.mark.parametrize("decision", ["keep", "promote"])
def test_export_without_version_refuses_a_challenger_retraining_kept_out(
    tmp_path: Path, decision: str
) -> None:
    """After a retrain that kept its champion, ``export --promote`` took the rejected
    challenger as the latest version; it now stops and names --version."""
    import json

    from inspection.cli.export import _refuse_kept_out
    from inspection.core.registry import Registry

    root = shutil.copytree(Path(__file__).parents[1] / "fixtures" / "registry_v2", tmp_path / "r")
    versions = root / "brick" / "versions"
    shutil.copytree(versions / "v0001", versions / "v0002")
    record = json.loads((versions / "v0002" / "record.json").read_text())
    (versions / "v0002" / "record.json").write_text(json.dumps(record | {"version": "v0002"}))
    registry = Registry(root)
    registry.journal.record_event(
        "brick", "retrain", actor="nightly", reason="image_auroc 0.91 vs 0.97 > tolerance",
        decision=decision, run="20261127T020000Z", challenger_version="v0002",
    )  # fmt: skip
    (tmp_path / "site.yaml").write_text(f"registry_dir: {root}\n", encoding="utf-8")
    args = ["export", "--product", "brick", "--promote", "--allow-unsigned"]

    if decision == "promote":
        _refuse_kept_out(registry, "brick")  # the latest version is the promoted one: no stop
        return
    result = CliRunner().invoke(
        app, [*args, "--site", str(tmp_path / "site.yaml")], env={"COLUMNS": "400"}
    )
    said = " ".join(result.output.split())
    assert result.exit_code == 2, said
    assert (
        "the latest version of brick, v0002, is the challenger retrain run 20261127T020000Z" in said
    )
    assert "kept out (image_auroc 0.91 vs 0.97 > tolerance)" in said and "--version v0002" in said


def test_the_gate_table_prints_false_rejects_and_misses_as_train_does() -> None:
    """Export once printed 'FRR 0.0000' and 'miss 0.0486' (fractions, 'FRR' defined nowhere)
    where train prints 'false reject 0.0% of 42': the same words, percent and counts now."""
    from inspection.cli.export import GATE_COLUMNS, _figures
    from inspection.core.export_gate import BundleFigures

    figures = BundleFigures(
        false_reject_rate=0.0, miss_rate=7 / 144, image_auroc=0.98765, pixel_auroc=None,
        aupro=None, region_recall=None, ng_without_region=0, n_good=42, n_defective=144,
    )  # fmt: skip
    cells = dict(zip(GATE_COLUMNS.values(), _figures(figures), strict=True))
    assert cells["false reject"] == "0.0% of 42" and cells["miss"] == "4.9% of 144"
    assert cells["img AUROC"] == "0.9877" and cells["px AUROC"] == "-"
    good_only = dataclasses.replace(figures, miss_rate=0.0, n_defective=0)
    assert dict(zip(GATE_COLUMNS.values(), _figures(good_only), strict=True))["miss"] == "-"
