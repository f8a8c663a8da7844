"""The bench harness: the machine and load to record, timed rounds, the FP32 + INT8 export of a
registered version, and the JSON + markdown report files.

Imported as a sibling module (``from _report import save_report``): the scripts run as
``python bench/<name>.py``, which puts ``bench/`` first on ``sys.path``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
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


def export_precisions(
    registry: Any, product: str, version: str, precisions: tuple[str, ...] = ("fp32", "int8"),
    *, force: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """``{precision: ExportResult}``: ``version`` exported once per precision exactly as
    ``inspection export`` does; ``force`` keeps a bundle its gate refused, to measure it."""
    # deferred: torch (the training side), only for the benches that export
    from inspection.training.export import ExportOptions
    from inspection.training.registry_export import RegistryExport, export_bundle

    return {
        precision: export_bundle(
            registry,
            product,
            ExportOptions(precision=precision, force=force),
            RegistryExport(version=version),
        )
        for precision in precisions
    }


def percent(value: float | None) -> str:
    """``0.123`` as ``"12.3 %"``; ``None`` as ``"-"``."""
    return "-" if value is None else f"{100 * value:.1f} %"


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


def interleaved_rounds(
    runs: dict[str, tuple[Callable[[Any], Any], list]], rounds: int = 5, per_round: int = 20
) -> dict[str, dict[str, Any]]:
    """p50 milliseconds of each ``{key: (run, images)}`` per round (3 warm-up calls first),
    the rounds taken in turn (round 1 of each, then round 2 of each, ...): the host's drift
    lands on every key alike, so keys compare fairly. Per key: the median of its rounds' p50s
    and their range."""
    import numpy as np

    for run, images in runs.values():
        for image in images[:3]:
            run(image)
    p50s: dict[str, list[float]] = {key: [] for key in runs}
    for _ in range(rounds):
        for key, (run, images) in runs.items():
            times = []
            for index in range(per_round):
                started = time.perf_counter()
                run(images[index % len(images)])
                times.append((time.perf_counter() - started) * 1e3)
            p50s[key].append(float(np.median(times)))
    return {
        key: {
            "p50_ms": round(float(np.median(values)), 2),
            "p50_range_ms": [round(min(values), 2), round(max(values), 2)],
            "rounds": rounds,
            "per_round": per_round,
        }
        for key, values in p50s.items()
    }
