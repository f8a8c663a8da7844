"""``inspection`` entry point: user-facing errors and uncaught OSErrors are one line, exit 2."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from inspection import cli
from inspection.core.errors import DatasetError


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (
            PermissionError(13, "Permission denied", "/var/x[1].db"),
            "/var/x[1].db: Permission denied",
        ),
        (
            OSError(18, "Invalid cross-device link", "/a", None, "/b"),
            "/a -> /b: Invalid cross-device link",
        ),
        (OSError("disk on fire"), "disk on fire"),
    ],
)
def test_uncaught_os_errors_are_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], error: OSError, line: str
) -> None:
    assert _main_raising(error, monkeypatch, capsys) == f"error: {line}\n"


def test_inspection_errors_stay_on_one_line_with_brackets_intact(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    message = "a [mask] folder " + "x" * 200
    assert _main_raising(DatasetError(message), monkeypatch, capsys) == f"error: {message}\n"


def _main_raising(
    error: Exception, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> str:
    """What ``inspection`` prints on stderr when its command raises ``error`` (exit 2)."""

    def failing_app() -> None:
        raise error

    monkeypatch.setattr(cli, "app", failing_app)
    monkeypatch.setattr(cli.sys, "argv", ["inspection", "anything"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def _helps() -> dict[str, str]:
    """The ``--help`` of every command and group, by command line."""
    from typer.main import get_command

    helps: dict[str, str] = {}

    def walk(command: object, path: list[str]) -> None:
        result = CliRunner().invoke(cli.app, [*path, "--help"], env={"COLUMNS": "250"})
        helps[" ".join(path) or "inspection"] = result.output
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(get_command(cli.app), [])
    return helps


def test_help_shows_no_flag_types_nor_raw_backticks() -> None:
    """``--help`` printed ``<bool>`` beside every flag and docstrings' ``code`` with their
    backticks; a ``<name>`` placeholder outside code would vanish as markup."""
    helps = _helps()
    assert len(helps) > 40 and "--update <product> instead adds" in " ".join(helps["train"].split())
    for command, text in helps.items():
        assert "<bool>" not in text and "`" not in text, command
    assert "products/<folder name>.yaml" in " ".join(helps["data check"].split())
