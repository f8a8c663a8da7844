"""A source that cannot be reached: a one-shot ``station sync`` fails in one line naming it
(it used to print 'offline' and exit 0); ``--watch`` keeps polling and warns once per outage."""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspection import cli
from inspection.cli import station as cli_station
from inspection.distribution import sync as sync_module
from inspection.distribution.sync import (
    PathSource,
    SourceUnreachable,
    SyncOutcome,
    sync_forever,
    sync_once,
)


def _closed_port() -> int:
    """A localhost port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def station(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INSPECTION_REGISTRY_TOKEN", "insp_test")
    config = tmp_path / "station.yaml"
    config.write_text("core:\n  registry_dir: reg\n  products: [brick, grass]\n"
                      "  allow_unsigned_bundles: true\n")  # fmt: skip
    return config


@pytest.mark.parametrize("kind", ["http", "path"])
def test_a_one_shot_sync_from_an_unreachable_source_fails_in_one_line(
    station: Path, tmp_path: Path, kind: str
) -> None:
    source = f"http://127.0.0.1:{_closed_port()}" if kind == "http" else str(tmp_path / "gone")
    result = CliRunner().invoke(cli.app, ["station", "sync", "--from", source, "-c", str(station)])
    assert isinstance(result.exception, SourceUnreachable), result.output
    message = str(result.exception)
    assert message.startswith(f"cannot reach {source}: ") and message.endswith(
        "; nothing was synced"
    )
    assert "\n" not in message
    assert not (tmp_path / "reg").exists()


def test_the_command_exits_non_zero_naming_the_url(
    station: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setattr(cli.sys, "argv", ["inspection", "station", "sync", "--from", url,
                                          "-c", str(station)])  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    [line] = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert line.startswith(f"error: cannot reach {url}: ConnectError")


def test_a_product_left_offline_mid_sync_exits_2(
    station: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catalog answered but a download was cut: the sync did not finish."""
    outcomes = [
        SyncOutcome("brick", "updated", "v0002-fp32", "v0002-fp32"),
        SyncOutcome("grass", "offline", None, "v0001-fp32", "cannot reach http://c: ReadTimeout"),
    ]
    monkeypatch.setattr(cli_station, "sync_once", lambda *args, **kwargs: outcomes)
    result = CliRunner().invoke(
        cli.app, ["station", "sync", "--from", "http://c", "-c", str(station)]
    )
    assert result.exit_code == 2, result.output
    assert "grass: offline" in result.output


def test_sync_once_still_reports_offline_for_pollers(tmp_path: Path) -> None:
    source = PathSource(tmp_path / "unmounted")
    outcomes = sync_once(source, tmp_path / "reg", ["brick"])
    assert [(o.status, o.detail) for o in outcomes] == [
        ("offline", f"cannot reach {tmp_path / 'unmounted'}: not a folder (mount missing?)")
    ]
    with pytest.raises(SourceUnreachable, match=r"cannot reach .*unmounted"):
        sync_once(source, tmp_path / "reg", ["brick"], offline_ok=False)


class _Polls(threading.Event):
    """Stops ``sync_forever`` after ``n`` polls; ``between(k)`` runs after poll k."""

    def __init__(self, n: int, between=lambda k: None) -> None:
        super().__init__()
        self.n, self.count, self.between = n, 0, between

    def wait(self, timeout: float | None = None) -> bool:
        self.count += 1
        self.between(self.count)
        if self.count >= self.n:
            self.set()
        return self.is_set()


def test_watch_warns_once_per_outage_and_notes_when_the_source_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    central = tmp_path / "central"
    heard: list[list[SyncOutcome]] = []
    polls = _Polls(5, between=lambda k: central.mkdir() if k == 3 else None)
    with caplog.at_level(logging.INFO, logger=sync_module.__name__):
        sync_forever(PathSource(central), tmp_path / "reg", ["brick"], interval_s=0.01,
                     stop=polls, on_outcomes=heard.append)  # fmt: skip
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"cannot reach {central}: not a folder (mount missing?); retrying every 0.01 s, "
        "the station keeps its live bundles"
    ]
    assert f"{central} is reachable again" in caplog.messages
    assert [[o.status for o in outcomes] for outcomes in heard] == [["not_live"], ["not_live"]]
