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
        app, ["inspect", str(fp32_bundle), str(folder), "--out", str(out), "--overlays"]
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


def test_inspect_json_and_threshold(fp32_bundle, folder, tmp_path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["inspect", str(fp32_bundle), str(folder), "--out", str(out), "-f", "json",
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
    result = CliRunner().invoke(app, ["inspect", str(fp32_bundle), str(folder), *args])
    assert result.exit_code == 2 and message in result.output


def test_inspect_fails_when_nothing_could_be_read(fp32_bundle, tmp_path) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    result = CliRunner().invoke(app, ["inspect", str(fp32_bundle), str(tmp_path / "a.png")])
    assert result.exit_code == 1 and "empty file" in result.output
