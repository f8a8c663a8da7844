"""The bench harness: the machine and load to record, and the JSON + markdown report files.

Imported as a sibling module (``from _report import save_report``): the scripts run as
``python bench/<name>.py``, which puts ``bench/`` first on ``sys.path``.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any


def lscpu(field: str) -> str:
    """One field of ``lscpu`` (``"Model name"``, ``"Flags"``: the whole ISA); "" if unknown."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""
    return next((ln.split(":", 1)[1].strip() for ln in out.splitlines()
                 if ln.startswith(f"{field}:")), "")  # fmt: skip


def cpu_description() -> str:
    """``lscpu``'s model name, the core count and the ISA flags that decide OpenVINO's kernels."""
    flags = lscpu("Flags").split()
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in flags]
    return f"{lscpu('Model name') or '?'} ({os.cpu_count()} cores; {' '.join(isa)})"


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages as ``"0.52 0.61 0.70"``, recorded with figures."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def previous_report(out: Path, stem: str) -> dict[str, Any]:
    """``<out>/<stem>.json`` of an earlier run ({} if none): a partial re-run keeps its rows."""
    path = out / f"{stem}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def save_report(
    out: Path,
    stem: str,
    report: Any,
    markdown: str | None = None,
    *,
    default: Callable[[Any], Any] | None = None,
) -> Path:
    """Write ``<out>/<stem>.json`` (indented) and, given ``markdown``, ``<out>/<stem>.md``.

    ``default`` converts what ``json`` cannot (as in ``json.dumps``). Creates ``out``; both
    files are UTF-8 and the JSON ends with a newline. Returns the JSON file's path.
    """
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}.json"
    path.write_text(json.dumps(report, indent=2, default=default) + "\n", encoding="utf-8")
    if markdown is not None:
        (out / f"{stem}.md").write_text(markdown, encoding="utf-8")
    return path
