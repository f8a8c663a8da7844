"""``scripts/softplc_local.sh``: its copy of ``line.yaml`` keeps the files named beside the
original (trust file, configs folder), and a station that exits ends the trial at once with the
station's own words, not a 60 s wait and a HandshakeTimeout traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspection.cli import app
from inspection.line.config import load_line_config
from tests.dashboard.scripts import load_script

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _site(root: Path) -> Path:
    """The repository's configs as committed (no trust file)."""
    ignore = shutil.ignore_patterns("site-trust.*")
    shutil.copytree(REPO / "configs", root / "configs", ignore=ignore)
    return root


def test_the_local_copy_keeps_the_pinned_keys(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(_site(tmp_path / "site"))
    assert CliRunner().invoke(app, ["keys", "init"]).exit_code == 0
    original = load_line_config("configs/line.yaml").core
    (tmp_path / "scratch").mkdir()
    copy = load_script("softplc_local").local_config(
        Path("configs/line.yaml"), tmp_path / "scratch", 1883, "opc.tcp://127.0.0.1:4840/plc"
    )
    copied = load_line_config(copy).core
    assert copied.signing_keys and copied.signing_keys == original.signing_keys
    assert copied.configs_dir == original.configs_dir.resolve()


@pytest.mark.slow
def test_a_station_that_exits_ends_the_trial_at_once(tmp_path: Path) -> None:
    if not Path(load_script("newcomer_walk").MOSQUITTO).is_file():
        if IN_CI:
            pytest.fail("mosquitto missing: run scripts/services.sh")
        pytest.skip("mosquitto missing: run scripts/services.sh")
    site = _site(tmp_path)  # no keys pinned: the station refuses to start
    (site / "var" / "registry").mkdir(parents=True)
    started = time.monotonic()
    trial = subprocess.run(
        ["bash", str(REPO / "scripts" / "softplc_local.sh"), "--triggers", "1"],
        cwd=site, env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert trial.returncode == 2, trial.stdout + trial.stderr
    assert "the line station exited" in trial.stdout and "signing key" in trial.stdout
    assert "Traceback" not in trial.stdout + trial.stderr
    assert time.monotonic() - started < 50
