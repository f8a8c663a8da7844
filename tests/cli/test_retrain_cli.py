"""``inspection retrain``: SIGTERM unwinds the run like Ctrl-C; a file error is one line."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspection.cli import app
from inspection.core.registry import Registry
from inspection.retrain import pipeline
from tests.conftest import TrainedProduct


def _invoke(tmp_path: Path) -> tuple[int, str]:
    (tmp_path / "site.yaml").write_text(f"registry_dir: {tmp_path / 'registry'}\n")
    (tmp_path / "retrain.yaml").write_text(f"work_dir: {tmp_path / 'work'}\n")
    result = CliRunner().invoke(
        app,
        ["retrain", "--product", "brick", "--site", str(tmp_path / "site.yaml"),
         "--config", str(tmp_path / "retrain.yaml")],
    )  # fmt: skip
    return result.exit_code, result.output


_STALLED_RETRAIN = """
import sys, time
from pathlib import Path
from inspection.cli import main
from inspection.retrain import pipeline

ready = Path(sys.argv.pop(1))

def stalled(path):
    ready.touch()  # the run is under way, its lock held: SIGTERM may come now
    time.sleep(120)

pipeline.load_dataset = stalled
main()
"""
"""``inspection retrain`` in its own interpreter, stalled where it reads the dataset."""


def test_sigterm_unwinds_the_run_so_its_failure_is_recorded(
    trained_patchcore: TrainedProduct, tmp_path: Path
) -> None:
    """SIGTERM's default action ended the process mid-run: no failed event, temp folders left
    behind. The run is a child process: a signal sent to pytest's own process (an xdist
    worker) killed the worker."""
    registry = tmp_path / "registry"
    shutil.copytree(trained_patchcore.registry.root, registry)
    (tmp_path / "site.yaml").write_text(f"registry_dir: {registry}\n")
    (tmp_path / "retrain.yaml").write_text(f"work_dir: {tmp_path / 'work'}\n")
    ready, log = tmp_path / "ready", tmp_path / "out.log"
    command = [sys.executable, "-c", _STALLED_RETRAIN, str(ready), "retrain", "--product",
               "brick", "--site", str(tmp_path / "site.yaml"),
               "--config", str(tmp_path / "retrain.yaml")]  # fmt: skip
    with log.open("w") as out:
        child = subprocess.Popen(command, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready.exists(), log.read_text()
        child.send_signal(signal.SIGTERM)
        code = child.wait(timeout=60)
    finally:
        child.kill()
    output = " ".join(log.read_text().split())
    assert code == 143, output
    assert "retrain stopped by SIGTERM; the champion stays live" in output
    [failed] = [e for e in Registry(registry).journal.events("brick") if e["action"] == "retrain"]
    assert (failed["decision"], failed["stage"]) == ("failed", "assemble")
    assert failed["reason"] == "failed during assemble: Terminated: stopped by SIGTERM"


def test_ctrl_c_unwinds_the_run_with_exit_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def run(product: str, **_: object) -> None:
        raise KeyboardInterrupt  # what Ctrl-C raises in the run

    monkeypatch.setattr(pipeline, "retrain_product", run)
    code, output = _invoke(tmp_path)
    assert code == 130 and "retrain interrupted; the champion stays live" in " ".join(
        output.split()
    )


def test_a_read_only_registry_is_one_line_without_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def run(product: str, **_: object) -> None:
        raise OSError(30, "Read-only file system", "/site/registry/.locks/retrain-brick.lock")

    monkeypatch.setattr(pipeline, "retrain_product", run)
    code, output = _invoke(tmp_path)
    assert code == 2
    said = " ".join(output.split())  # then only where the run's library logs went
    assert said.split(" library logs and warnings: ")[0] == (
        "retrain failed, the champion stays live: /site/registry/.locks/retrain-brick.lock: "
        "Read-only file system (free space or make it writable, then run again)"
    )
    assert not any(record.exc_info for record in caplog.records if record.levelname == "ERROR")
