"""``inspection retrain``: SIGTERM unwinds the run like Ctrl-C; a file error is one line."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspection.cli import app
from inspection.retrain import pipeline


def _invoke(tmp_path: Path) -> tuple[int, str]:
    (tmp_path / "site.yaml").write_text(f"registry_dir: {tmp_path / 'registry'}\n")
    (tmp_path / "retrain.yaml").write_text(f"work_dir: {tmp_path / 'work'}\n")
    result = CliRunner().invoke(
        app,
        ["retrain", "--product", "brick", "--site", str(tmp_path / "site.yaml"),
         "--config", str(tmp_path / "retrain.yaml")],
    )  # fmt: skip
    return result.exit_code, result.output


def test_sigterm_unwinds_the_run_so_its_failure_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM's default action ended the process mid-export: no failed event, temp folders
    left behind."""
    unwound: list[BaseException] = []

    def run(product: str, **_: object) -> None:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except BaseException as exc:  # retrain_product records the failure here
            unwound.append(exc)
            raise

    monkeypatch.setattr(pipeline, "retrain_product", run)
    before = signal.getsignal(signal.SIGTERM)  # a worker process may have its own handler
    code, output = _invoke(tmp_path)
    assert code == 143 and [str(e) for e in unwound] == ["stopped by SIGTERM"]
    assert "retrain stopped by SIGTERM; the champion stays live" in output
    assert signal.getsignal(signal.SIGTERM) is before


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
