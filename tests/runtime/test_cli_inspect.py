"""``inspection inspect``: table, CSV/JSON results, overlays; bad files are rows, not crashes."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspection.cli import app
from inspection.core.images import read_image

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _no_site_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run outside the checkout: a demo site there (``var/keys``) would refuse the session's
    unsigned bundle (tests/station/test_secure_by_default.py covers that)."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture()
def folder(tiny_product: Path, tmp_path: Path) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    for path in sorted((tiny_product / "test").rglob("*.png"))[:3]:
        shutil.copy(path, images / f"{path.parent.name}_{path.name}")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return images


def test_inspect_folder_writes_csv_and_overlays(fp32_bundle, folder, tmp_path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "inspect",
            str(fp32_bundle),
            str(folder),
            "--allow-unsigned",
            "--out",
            str(out),
            "--overlays",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "4 files" in result.output and "1 errors" in result.output
    rows = list(csv.DictReader((out / "results.csv").read_text(encoding="utf-8").splitlines()))
    assert len(rows) == 4
    broken = next(r for r in rows if r["path"].endswith("broken.png"))
    assert "not an image (unrecognised format)" in broken["error"] and broken["verdict"] == ""
    good_rows = [r for r in rows if not r["error"]]
    assert all(r["verdict"] in ("OK", "NG") and 0 <= float(r["score"]) <= 1 for r in good_rows)
    overlays = sorted((out / "overlays").glob("*.png"))
    assert len(overlays) == 3
    assert read_image(overlays[0]).shape == (128, 128, 3)
    # INFO logs (bundle loaded, golden check) go to the site's log file, not the results table
    assert "loaded bundle" not in result.output
    (log_file,) = (tmp_path / "var" / "logs").glob("inspect-*.log")
    assert "loaded bundle" in log_file.read_text(encoding="utf-8")
    assert f"logs: {log_file.relative_to(tmp_path)}" in result.output.replace("\n", "")


def test_inspect_json_and_threshold(fp32_bundle, folder, tmp_path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["inspect", str(fp32_bundle), str(folder), "--allow-unsigned", "--out", str(out), "-f", "json",
         "--threshold", "0.001"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "results.json").read_text())
    judged = [r for r in rows if not r["error"]]
    assert len(judged) == 3 and any(r["verdict"] == "NG" for r in judged)
    # the threshold given is the one applied (a part far below the calibrated threshold
    # normalises to 0.0, so even 0.001 need not call it NG)
    assert all((r["verdict"] == "NG") == (r["score"] >= 0.001) for r in judged)
    assert rows[0]["model"] == "brick/v0001-fp32"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "xml"], "must be one of csv, json"),
        (["--overlays"], "--overlays needs --out DIR"),
    ],
)
def test_inspect_rejects_bad_options(fp32_bundle, folder, args, message) -> None:
    result = CliRunner().invoke(
        app, ["inspect", str(fp32_bundle), str(folder), "--allow-unsigned", *args]
    )
    assert result.exit_code == 2 and message in result.output


def test_inspect_fails_when_nothing_could_be_read(fp32_bundle, tmp_path) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    result = CliRunner().invoke(
        app, ["inspect", str(fp32_bundle), str(tmp_path / "a.png"), "--allow-unsigned"]
    )
    assert result.exit_code == 1 and "empty file" in result.output


def test_refused_files_get_one_line_each_and_the_rest_is_judged(fp32_bundle, folder, tmp_path):
    from PIL import Image

    first = next(p for p in sorted(folder.glob("*.png")) if p.name != "broken.png")
    Image.open(first).convert("L").save(folder / "mono.png")  # a mono camera's part
    Image.open(first).resize((8, 8)).save(folder / "thumb.png")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["inspect", str(fp32_bundle), str(folder), "--allow-unsigned", "--out", str(out)],
        env={"COLUMNS": "300"},
    )
    assert result.exit_code == 0, result.output
    refused = [line for line in result.output.splitlines() if line.startswith("refused ")]
    assert len(refused) == 2 and "mono.png: grey image" in refused[0]
    assert "thumb.png: image is 8x8" in refused[1]
    assert "6 files: " in result.output and "2 refused, 1 errors" in result.output
    rows = list(csv.DictReader((out / "results.csv").read_text(encoding="utf-8").splitlines()))
    assert sum(1 for r in rows if r["verdict"] in ("OK", "NG")) == 3
    warned = CliRunner().invoke(
        app, ["inspect", str(fp32_bundle), str(folder), "--allow-unsigned", "--input-check", "warn", "-f", "json",
              "--out", str(out)],
    )  # fmt: skip
    assert warned.exit_code == 0, warned.output
    rows = json.loads((out / "results.json").read_text())
    mono = next(r for r in rows if r["path"].endswith("mono.png"))
    assert mono["verdict"] in ("OK", "NG") and mono["warning"].startswith("grey image")
    assert "0 refused, 1 errors; 2 judged despite an input warning" in warned.output
    bad = CliRunner().invoke(
        app, ["inspect", str(fp32_bundle), str(folder), "--allow-unsigned", "--input-check", "x"],
        env={"COLUMNS": "300"},
    )  # fmt: skip
    assert bad.exit_code == 2 and "must be one of refuse, warn, off" in bad.output


def test_a_bad_input_check_gets_the_core_rules_message(tmp_path: Path) -> None:
    """``--input-check`` is checked by ``core.input_domain.input_check_mode`` (no copy of the
    modes in the CLI), before any bundle is read."""
    from inspection.core.input_domain import input_check_mode

    with pytest.raises(ValueError) as core:
        input_check_mode("maybe")
    bad = CliRunner().invoke(
        app,
        ["inspect", str(tmp_path / "no-bundle"), str(tmp_path), "--input-check", "maybe"],
        env={"COLUMNS": "300"},
    )
    assert bad.exit_code == 2 and str(core.value) in bad.output, bad.output
