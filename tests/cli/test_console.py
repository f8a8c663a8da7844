"""The first-run screen: INFO logs and library warnings go to a log file, then all is restored."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from rich.console import Console

from inspection.cli.console import StepProgress, print_table, quiet_logs, screen, summary_table


def test_quiet_logs_sends_info_and_warnings_to_the_file_and_restores(tmp_path: Path) -> None:
    screen = io.StringIO()
    handler = logging.StreamHandler(screen)
    root = logging.getLogger()
    root.addHandler(handler)
    lightning = logging.getLogger("lightning.pytorch")
    banner = logging.StreamHandler(screen)
    lightning.addHandler(banner)
    try:
        with quiet_logs(tmp_path / "logs", "demo") as path:
            logging.getLogger("inspection.x").info("an info line")
            logging.getLogger("inspection.x").warning("a real problem")
            lightning.info("GPU available: False")
            warnings.warn("timm.models.layers is deprecated", FutureWarning, stacklevel=1)
        assert path is not None and path.parent == tmp_path / "logs"
        logged = path.read_text()
        for line in ("an info line", "a real problem", "GPU available", "deprecated"):
            assert line in logged
        shown = screen.getvalue()
        assert "a real problem" in shown
        assert "an info line" not in shown and "GPU available" not in shown
        assert "deprecated" not in shown
        # restored: the screen handler and the library's own handler are as before
        assert handler.level == logging.NOTSET and lightning.handlers == [banner]
        assert not [h for h in root.handlers if getattr(h, "baseFilename", "") == str(path)]
    finally:
        root.removeHandler(handler)
        lightning.removeHandler(banner)


def test_an_unwritable_log_folder_does_not_stop_the_command(tmp_path: Path) -> None:
    blocked = tmp_path / "logs"
    blocked.write_text("a file where the log folder should be")
    root = logging.getLogger()
    handlers = list(root.handlers)
    with quiet_logs(blocked, "inspect") as path:
        logging.getLogger("inspection.x").info("an info line")
    assert path is None
    assert root.handlers == handlers  # restored


def test_verbose_writes_no_log_file(tmp_path: Path) -> None:
    with quiet_logs(tmp_path / "logs", "train", verbose=True) as path:
        assert path is None
    assert not (tmp_path / "logs").exists()


def test_step_progress_and_summary_render() -> None:
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=False)
    with StepProgress(console, "train", 2) as progress:
        progress.task("brick: patchcore")
        progress.done()
        progress.task("brick: stfpm")
        progress.done()
    console.print(summary_table("demo finished", [("open next", "inspection dashboard")]))
    text = out.getvalue()
    assert "train" in text and "2/2" in text and "inspection dashboard" in text


def test_closing_table_is_not_cut_off_a_terminal() -> None:
    """A CI log has no terminal: rich assumes 80 columns; the table's long paths must survive."""
    report = "var/reports/brick/patchcore-20261123T101010Z-abcdef0123/report.md"
    rows = [("reports", report), ("open next", "inspection dashboard   (review results, models)")]
    out = io.StringIO()
    print_table(Console(file=out, width=80, force_terminal=False), summary_table("done", rows))
    text = out.getvalue()
    assert report in text and "(review results, models)" in text
    assert max(len(line) for line in text.splitlines()) <= 120


def test_closing_table_folds_in_a_narrow_terminal() -> None:
    report = "var/reports/brick/patchcore-20261123T101010Z-abcdef0123/report.md"
    out = io.StringIO()
    terminal = Console(file=out, width=60, force_terminal=True, color_system=None)
    print_table(terminal, summary_table("done", [("reports", report)]))
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 60
    assert "".join(line.strip("│ ") for line in lines).count("report.md") == 1


@pytest.mark.parametrize(("argv", "shown"), [([], False), (["-v"], True)])
def test_library_deprecation_notices_at_import_show_only_with_verbose(argv, shown) -> None:
    """timm and anomalib warn on import, before a command's log file exists: screen only with -v.
    The probe ends without the interpreter's teardown of torch (~1.4 s), as ``inspection``'s
    own ``main`` does (``_exit_fast``)."""
    probe = (
        "import os, sys, warnings; warnings.simplefilter('default'); "
        f"from inspection.cli import quiet_import_noise; quiet_import_noise({argv!r}); "
        "import anomalib.models; sys.stderr.flush(); os._exit(0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert ("FutureWarning" in result.stderr) is shown, result.stderr[-2000:]


def test_output_off_a_terminal_keeps_each_line_whole(capsys: pytest.CaptureFixture[str]) -> None:
    """Piped to a file or a CI log, rich broke the demo's and export's lines at 80 columns
    ("(mode" / "0600)"): a command's console keeps them whole there (``screen``)."""
    line = f"created bundles key 0123: private {'/very/long' * 12}/site-signing.key (mode 0600)"
    screen().print(line)
    screen(stderr=True).print(line)
    said = capsys.readouterr()
    assert said.out == said.err == line + "\n"


def test_a_command_with_its_stdout_closed_ends_without_a_traceback() -> None:
    """A service manager or `>&-` may start a command with no stdout: the consoles must not
    ask a missing stream whether it is a terminal at import."""
    run = subprocess.run(
        [sys.executable, "-m", "inspection", "users", "--help"],
        preexec_fn=lambda: os.close(1), stderr=subprocess.PIPE, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
