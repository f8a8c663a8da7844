"""``inspection`` ends without the interpreter's teardown once torch is loaded: the exit code,
the screen output and the atexit handlers (log files, temporary folders) are kept."""

from __future__ import annotations

import subprocess
import sys


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """``main`` as the program (the ``inspection`` script's shape), torch loaded, an atexit
    handler registered, and a line the interpreter's teardown would print last."""
    probe = (
        "import atexit, sys, torch\n"
        "from inspection.cli import main\n"
        "atexit.register(lambda: print('atexit ran', flush=True))\n"
        "class Teardown:\n"
        "    def __del__(self): print('teardown ran', flush=True)\n"
        "keep = Teardown()\n"
        f"sys.argv = {['inspection', *argv]!r}\n"
        "main()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )


def test_a_command_that_loaded_torch_keeps_its_output_code_and_atexit_handlers() -> None:
    done = _run(["--help"])
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout and "atexit ran" in done.stdout
    assert "teardown ran" not in done.stdout  # the module teardown was skipped


def test_a_usage_error_keeps_its_exit_code() -> None:
    done = _run(["no-such-command"])
    assert done.returncode == 2
    assert "No such command" in done.stderr and "atexit ran" in done.stdout
