"""The station runtime and its CLI command must import without torch."""

from __future__ import annotations

import subprocess
import sys


def test_inspector_and_inspect_cli_import_without_torch() -> None:
    code = (
        "import sys, inspection.runtime.inspector, inspection.runtime.overlays, "
        "inspection.cli.inspect; "
        "bad = [m for m in ('torch', 'anomalib', 'lightning', 'nncf') if m in sys.modules]; "
        "assert not bad, bad"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
