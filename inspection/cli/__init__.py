"""The ``inspection`` command: each module's ``typer.Typer`` objects are found automatically (a
named one is a group), and heavy imports stay inside the commands so ``--help`` is fast and
station commands never import torch."""

from __future__ import annotations

import atexit
import importlib
import logging
import os
import pkgutil
import sys
import threading
import warnings
from typing import NoReturn

import click
import typer
import typer.core
from rich.markup import escape

from inspection.cli.console import os_error_line, screen, show_file_names
from inspection.core.errors import InspectionError

HELP_MARKUP = "markdown"
"""How ``--help`` renders docstrings: ``code`` spans as code, never as raw backticks."""
app = typer.Typer(
    name="inspection",
    help="Industrial visual anomaly inspection: data, training, export, station runtime, "
    "service, review dashboard and retraining.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=HELP_MARKUP,
)
err_console = screen(stderr=True)

IMPORT_TIME_NOISE = r"(timm|anomalib)\."
"""Libraries whose deprecation notices fire on import (timm's ``models.layers``, anomalib's
dinov2 package), before a command's log file takes warnings: off the screen unless -v."""


def _register_commands() -> None:
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for value in vars(module).values():
            if isinstance(value, typer.Typer) and value.info.name:
                value.rich_markup_mode = HELP_MARKUP
                app.add_typer(value)
            elif isinstance(value, typer.Typer):  # before every group in --help, as app.command
                app.registered_commands += value.registered_commands


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _no_flag_types() -> None:
    """``--help`` shows no ``<bool>`` type beside a flag (typer 0.29 does)."""
    shown = typer.core.TyperOption.display_type_rich

    def display_type_rich(self: typer.core.TyperOption, ctx: click.Context) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    typer.core.TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_no_flag_types()
_register_commands()


def quiet_import_noise(argv: list[str]) -> None:
    """Hide ``IMPORT_TIME_NOISE``'s deprecation notices unless the command line asks -v."""
    if not {"-v", "--verbose"} & set(argv):
        warnings.filterwarnings("ignore", category=FutureWarning, module=IMPORT_TIME_NOISE)


def main() -> None:
    """Entry point: user-facing errors print one clear line and exit 2, never a traceback."""
    quiet_import_noise(sys.argv[1:])
    show_file_names()
    try:
        app()
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            _exit_fast(exc.code or 0)
        raise
    except InspectionError as exc:
        _fail(str(exc))
    except OSError as exc:  # safety net: a file that cannot be read or written
        logging.getLogger(__name__).debug("uncaught OSError", exc_info=True)
        _fail(os_error_line(exc))


def _exit_fast(code: int) -> None:
    """Once torch is loaded, end the process without the interpreter's slow teardown of its
    modules, when this ``main`` is the program (never a caller such as a test); threads and
    atexit handlers still run first, in the interpreter's order."""
    entry = getattr(sys.modules.get("__main__"), "main", None) is main
    if not entry or "torch" not in sys.modules:
        return
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _fail(message: str) -> NoReturn:
    """Print ``error: <message>`` on one line (no markup, no wrapping) and exit 2."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(2)
