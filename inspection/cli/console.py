"""A readable screen for long commands (``inspection demo``, ``inspection train``): library
logs in a file (``quiet_logs``), progress bars, the closing tables printed uncut in CI logs."""

from __future__ import annotations

import codecs
import logging
import socket
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from inspection.core.config import SiteConfig

# Libraries that install their own console handlers (Lightning prints banners and tips).
THIRD_PARTY_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "py.warnings")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
TABLE_WIDTH = 120  # columns a table gets where the output has no terminal width (logs, CI)


SHOWN = "inspection-shown"
"""The encoding error handler of the command line's output and log files: a file name's bytes
that are not UTF-8 (kept by Python as surrogates) are written as U+FFFD, as ``shown_name``
shows them, never a ``UnicodeEncodeError``."""
codecs.register_error(SHOWN, lambda error: ("\ufffd" * (error.end - error.start), error.end))


def show_file_names() -> None:
    """Write any file name the commands print as ``shown_name`` does (``SHOWN``)."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)  # a test's captured stream has none
        if reconfigure is not None:
            reconfigure(errors=SHOWN)


def log_dir(site: SiteConfig) -> Path:
    return logs_beside(site.registry_dir)


def logs_beside(registry_dir: str | Path) -> Path:
    return Path(registry_dir).parent / "logs"


def configs_line(site: SiteConfig) -> str:
    """Which configs folder a command reads, and why."""
    if site.configs_dir is not None:
        return f"configs: {Path(site.configs_dir).resolve()} (site config)"
    return f"configs: {site.configs.resolve()} (no site file)"


def verbose_requested(flag: bool) -> bool:
    """``--verbose`` here or on ``inspection`` itself (the root logger then logs DEBUG)."""
    return flag or logging.getLogger().isEnabledFor(logging.DEBUG)


@contextmanager
def quiet_logs(log_dir: Path, name: str, *, verbose: bool = False) -> Iterator[Path | None]:
    """Send INFO logs, library warnings and Lightning's banners to ``<log_dir>/<name>-<UTC
    time>.log`` for the block (WARNING and above still reach the screen); yields its path
    (None: verbose, or unwritable)."""
    if verbose:
        yield None
        return
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = log_dir / f"{name}-{stamp}.log"
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        file_handler: logging.Handler = logging.FileHandler(path, encoding="utf-8", errors=SHOWN)
    except OSError as exc:  # a read-only working directory must not stop the command
        logging.getLogger(__name__).warning(
            "cannot write the log file %s (%s): INFO logs are not kept; -v shows them",
            path, exc.strerror or exc,
        )  # fmt: skip
        file_handler, path = logging.NullHandler(), None
    file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
    file_handler.setLevel(logging.INFO)
    root = logging.getLogger()
    saved_level = root.level
    # plain console handlers only (pytest's capture handlers are subclasses and stay as they are)
    screens = [h for h in root.handlers if type(h) is logging.StreamHandler]
    screen_levels = [h.level for h in screens]
    libraries = [logging.getLogger(name) for name in THIRD_PARTY_LOGGERS]
    library_state = [(library.handlers, library.propagate) for library in libraries]
    for library in libraries:  # their own handlers off: records go to the root (the log file)
        library.handlers, library.propagate = [], True
    root.addHandler(file_handler)
    root.setLevel(min(saved_level or logging.INFO, logging.INFO))
    for handler in screens:
        handler.setLevel(max(handler.level, logging.WARNING))
    logging.captureWarnings(True)
    warnings_logger = logging.getLogger("py.warnings")
    warnings_logger.addHandler(file_handler)
    warnings_logger.propagate = False  # third-party warnings: file only
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            yield path
    finally:
        logging.captureWarnings(False)
        warnings_logger.removeHandler(file_handler)
        root.removeHandler(file_handler)
        root.setLevel(saved_level)
        for handler, level in zip(screens, screen_levels, strict=True):
            handler.setLevel(level)
        for library, (handlers, propagate) in zip(libraries, library_state, strict=True):
            library.handlers, library.propagate = handlers, propagate
        file_handler.close()


class StepProgress:
    """One progress display for a step of ``total`` tasks, with a bar for a long stage."""

    def __init__(self, console: Console, title: str, total: int) -> None:
        self.title = title
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[title]}[/]"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.description}"),
            console=console,
            transient=False,
        )
        self._task = self._progress.add_task("", total=total, title=title)
        self._stage: TaskID | None = None

    def __enter__(self) -> StepProgress:
        self._progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self._progress.update(self._task, description="done" if kind is None else "failed")
        self._progress.stop()

    def task(self, text: str) -> None:
        self._progress.update(self._task, description=text)

    def stage(self, name: str, done: int, total: int) -> None:
        """Show ``done`` of ``total`` units of a long stage on a line under the step's."""
        if self._stage is None:
            self._stage = self._progress.add_task(name, total=total, title="")
        self._progress.update(self._stage, description=name, completed=done, total=total)

    def done(self) -> None:
        self._progress.advance(self._task)


class _Screen(Console):
    """A console whose words wrap on a terminal; off one (a pipe, a log file, CI) each line
    stays whole, as rich would otherwise break it at 80 columns mid-sentence. Decided at each
    print by rich's own ``is_terminal`` (a missing or replaced stream, ``FORCE_TERMINAL``)."""

    @property  # type: ignore[override]
    def soft_wrap(self) -> bool:
        return not self.is_terminal

    @soft_wrap.setter
    def soft_wrap(self, _value: bool) -> None:  # Console.__init__ sets it
        pass


def screen(*, stderr: bool = False) -> Console:
    """A command's console (``_Screen``): on stdout, or on stderr."""
    return _Screen(stderr=stderr)


def file_progress() -> Progress:
    """A transient bar over files, drawn on stderr."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def summary_table(title: str, rows: Sequence[tuple[str, str]]) -> Table:
    """A two-column closing table (what, where); long paths fold instead of being cut."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what", style="bold", no_wrap=True)
    table.add_column("where / next", overflow="fold")
    for what, where in rows:
        table.add_row(what, where)
    return table


def print_table(console: Console, table: Table, *, width: int = TABLE_WIDTH) -> None:
    """Print ``table`` uncut: off a terminal rich assumes 80 columns and would crop it."""
    if console.is_terminal or console.width >= width:
        console.print(table)
        return
    Console(file=console.file, width=width, color_system=None, force_terminal=False).print(table)


def print_log_file(console: Console, path: Path | None) -> None:
    """The log file's path on one unwrapped line, easy to copy (None: nothing)."""
    if path is not None:
        console.print(f"library logs and warnings: {path}", soft_wrap=True, highlight=False)


def ready_to_write(path: Path, hint: str, *, folder: bool = False) -> None:
    """Create the folder of ``path`` (itself when ``folder``), or stop saying why it cannot."""
    if not folder and path.is_dir():
        raise typer.BadParameter(f"{path} is a folder, not a file", param_hint=hint)
    target = path if folder else path.parent
    if target.exists() and not target.is_dir():
        raise typer.BadParameter(f"{target} is a file, not a folder", param_hint=hint)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        message = f"cannot create {target}: {exc.strerror}"
        raise typer.BadParameter(message, param_hint=hint) from exc


def os_error_line(exc: OSError) -> str:
    """``<file>: <reason>`` (both files of a rename or link); ``str(exc)`` without a file."""
    if exc.filename is None:
        return str(exc)
    names = [str(exc.filename)] + ([] if exc.filename2 is None else [str(exc.filename2)])
    return f"{' -> '.join(names)}: {exc.strerror or exc}"


def check_port_free(host: str, port: int) -> None:
    """Refuse ``--port`` when ``host:port`` cannot be bound, before anything is loaded."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind(address)
    except OSError as exc:
        raise typer.BadParameter(
            f"port {port} on {host} is not free ({exc.strerror or exc}): pass another, e.g. "
            f"--port {port + 1}, or stop the server that holds it",
            param_hint="--port",
        ) from exc
