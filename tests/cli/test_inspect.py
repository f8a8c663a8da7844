"""``inspection inspect``: unique overlay names, bad options as one-line usage errors, re-runs
that leave the previous run's overlays alone."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner, Result

from inspection.cli import app
from inspection.cli.inspect import MAX_OVERLAY_NAME, display_names, overlay_paths
from inspection.runtime.paths import FoundFile


@pytest.fixture(autouse=True)
def _outside_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A demo site in the checkout (``var/keys``) would refuse the session's unsigned bundle."""
    monkeypatch.chdir(tmp_path)


def _invoke(args: list[str]) -> Result:
    """Run the CLI wide enough that error panels keep temporary paths on one line."""
    return CliRunner().invoke(app, args, env={"COLUMNS": "400"})


def _names(*relative: str) -> list[str]:
    found = [FoundFile(Path("/in") / r, r) for r in relative]
    return [p.name for p in overlay_paths(found, Path("/out"))]


def test_overlay_names_keep_the_relative_path_and_suffix() -> None:
    assert _names("lineA/cam1/000.png", "lineA/cam1/000.jpg", "lineB/cam1/000.png") == [
        "lineA_cam1_000.png_overlay.png",
        "lineA_cam1_000.jpg_overlay.png",
        "lineB_cam1_000.png_overlay.png",
    ]


def test_overlay_names_are_unique_within_a_run() -> None:
    names = _names("a_b/c.png", "a/b_c.png", "x.png", "X.PNG", "x.png", ".hidden.png")
    assert names == [
        "a_b_c.png_overlay.png",
        "a_b_c.png-2_overlay.png",
        "x.png_overlay.png",
        "X.PNG-2_overlay.png",  # case-insensitive file systems would merge X.PNG and x.png
        "x.png-3_overlay.png",
        "hidden.png_overlay.png",
    ]


def test_overlay_names_stay_within_file_name_limits() -> None:
    (name,) = _names("/".join(["ä" * 60] * 8) + "/000.png")
    assert len(name.encode()) <= MAX_OVERLAY_NAME and name.endswith("000.png_overlay.png")


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--threshold", "0"], "must be between 0 and 1 (exclusive), got 0.0"),
        (["--threshold", "1.5"], "must be between 0 and 1 (exclusive), got 1.5"),
        (["--work-side", "0"], "greater than or equal to 1"),
        (["--latency-budget-ms", "0"], "must be a positive number of ms, got 0.0"),
    ],
)
def test_bad_options_are_usage_errors(tmp_path: Path, option: list[str], message: str) -> None:
    result = _invoke(["inspect", "bundle", str(tmp_path), *option])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("below", [False, True])
def test_an_out_that_is_a_file_stops_before_the_bundle_loads(tmp_path: Path, below: bool) -> None:
    afile = tmp_path / "afile"
    afile.write_text("mine")
    out = afile / "sub" if below else afile
    result = _invoke(["inspect", "no-bundle", str(tmp_path), "--out", str(out)])
    assert result.exit_code == 2, result.output
    expected = "cannot create" if below else "is a file, not a folder"
    assert expected in result.output and "Traceback" not in result.output
    assert afile.read_text() == "mine"


@pytest.mark.slow
def test_overlays_of_colliding_names_all_survive_and_reruns_skip_them(
    fp32_bundle: Path, tiny_product: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "coll"
    sources = sorted((tiny_product / "test" / "good").glob("*.png"))[:3]
    for line in ("lineA", "lineB"):
        (folder / line / "cam1").mkdir(parents=True)
    shutil.copy(sources[0], folder / "lineA" / "cam1" / "000.png")
    Image.open(sources[1]).save(folder / "lineA" / "cam1" / "000.jpg")
    shutil.copy(sources[2], folder / "lineB" / "cam1" / "000.png")
    out = folder / "results"
    args = [
        "inspect",
        str(fp32_bundle),
        str(folder),
        "--allow-unsigned",
        "--out",
        str(out),
        "--overlays",
    ]

    for _ in range(2):  # the second run must not judge the first run's overlays
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "3 files" in result.output

    rows = list(csv.DictReader((out / "results.csv").read_text(encoding="utf-8").splitlines()))
    overlays = {row["overlay"] for row in rows}
    assert len(rows) == 3 and len(overlays) == 3
    assert sorted(p.name for p in (out / "overlays").iterdir()) == sorted(
        Path(p).name for p in overlays
    )


def test_the_table_tells_files_of_a_deep_folder_apart(tmp_path: Path) -> None:
    """At 80 columns, ``data/washer/test/dent/part_005.png`` was cut to ``data/washer/test/de…``
    on every row: the one missed part could not be found without the results file."""
    from bench._shared import write_mean_bundle

    bundle = write_mean_bundle(tmp_path / "bundle", input_size=(32, 32), product="washer")
    folder = tmp_path / "plant_data" / "washer_category" / "test"
    names = ["dent/part_004.png", "dent/part_005.png", "scratch/part_004.png"]
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((64, 64, 3), 40, np.uint8)).save(folder / name)
    args = ["inspect", str(bundle), str(folder), "--allow-unsigned", "--input-check", "off"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert all(name in result.output for name in names), result.output


def test_the_table_shows_full_paths_when_names_below_the_folders_repeat() -> None:
    found = [
        FoundFile(Path("a/good/0.png"), "good/0.png"),
        FoundFile(Path("b/good/0.png"), "good/0.png"),
    ]
    assert display_names(found) == ["a/good/0.png", "b/good/0.png"]


@pytest.mark.parametrize("passed", [True, False])
def test_a_gate_refused_bundle_needs_allow_refused(tmp_path: Path, passed: bool) -> None:
    """A bundle its export gate refused (INT8 missing defects) ran without a word; now it
    stops with the gate's reason unless ``--allow-refused``, which is announced."""
    from bench._shared import write_mean_bundle
    from inspection.core.export_gate import BundleFigures, ExportRecord, GateRecord

    figures = BundleFigures(0.0, 0.5, 0.9, None, None, None, 0, n_good=6, n_defective=6)
    failures = () if passed else ("miss rate 0.500 vs FP32 0.000 (tolerance 0.05)",)
    gate = GateRecord(passed, figures, figures, failures=failures)
    bundle = write_mean_bundle(
        tmp_path / "bundle", input_size=(32, 32), product="plain",
        metrics=ExportRecord(gate=gate).to_mapping(),
    )  # fmt: skip
    image = tmp_path / "part.png"
    Image.fromarray(np.full((32, 32, 3), 40, dtype=np.uint8)).save(image)
    args = ["inspect", str(bundle), str(image), "--allow-unsigned"]

    plain, allowed = _invoke(args), _invoke([*args, "--allow-refused"])

    assert allowed.exit_code == 0, allowed.output
    if passed:
        assert plain.exit_code == 0, plain.output
        assert "export gate" not in plain.output + allowed.output
        return
    assert plain.exit_code == 2 and "1 files" not in plain.output
    assert "refused: plain/v0001-fp32 was refused by its export gate: miss rate" in plain.output
    assert "--allow-refused" in plain.output
    assert "--allow-refused: plain/v0001-fp32 was refused by its export gate" in allowed.output
    assert "1 files: " in allowed.output
