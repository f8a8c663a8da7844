"""The bench harness: rounds, what a run's figures depend on (command, commit, CPU, load),
child processes timed from outside, markdown tables and the JSON + markdown report files.

Imported as a sibling module (``from _report import save_report``): ``python bench/<name>.py``
puts ``bench/`` first on ``sys.path``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def cpu_description() -> str:
    """The CPU model, its core count and the ISA flags that decide OpenVINO's kernels."""
    from inspection.runtime.hardware import cpu_info

    info = cpu_info()
    isa = [
        f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in info.isa
    ]
    return f"{info.model} ({info.cores} cores; {' '.join(isa)})"


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages as ``"0.52 0.61 0.70"``."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@contextmanager
def recorded(argv: list[str] | None = None) -> Iterator[dict[str, str]]:
    """What the figures measured in the block depend on: ``command`` (``python bench/<name>.py``
    and ``argv``, the arguments ``main`` was called with, else the process's), ``commit``,
    ``cpu`` (``cpu_description``), ``load_before`` and, once the block ends, ``load_after``."""
    script = Path(sys.argv[0]).resolve()
    name = script.relative_to(REPO) if script.is_relative_to(REPO) else script
    git = ["git", "rev-parse", "--short", "HEAD"]
    env = {
        "command": " ".join(["python", str(name), *(sys.argv[1:] if argv is None else argv)]),
        "commit": subprocess.run(git, cwd=REPO, capture_output=True, text=True).stdout.strip(),
        "cpu": cpu_description(),
        "load_before": load_average(),
    }
    yield env
    env["load_after"] = load_average()


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def rounds(subjects: Mapping[str, Callable[[int], T]], repeat: int) -> dict[str, list[T]]:
    """``subject(round)`` of every subject, ``repeat`` rounds in turn (all subjects, then all
    again), so that a drift of the machine's speed hits them alike."""
    runs: dict[str, list[T]] = {name: [] for name in subjects}
    for r in range(repeat):
        for name, subject in subjects.items():
            runs[name].append(subject(r))
    return runs


def measured(command: list[str], **popen: Any) -> tuple[str, int, float, float, float]:
    """Run ``command``: (stdout, exit code, wall seconds, peak RSS in GB of that process and
    the children it waited for, from its own ``wait4`` rusage, not this process's; and the
    peak of its anonymous resident memory, ``RssAnon`` sampled every 0.2 s: what it holds
    itself, without the file pages the kernel may write out and drop)."""
    started = time.perf_counter()
    anon = [0]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, **popen) as child:
        sampler = threading.Thread(target=_sample_anon, args=(child.pid, anon), daemon=True)
        sampler.start()
        stdout = child.stdout.read() if child.stdout else ""
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    sampler.join()
    peak, peak_anon = usage.ru_maxrss / 1024**2, anon[0] / 1024**2
    return stdout, child.returncode, wall, round(peak, 2), round(peak_anon, 2)


def _sample_anon(pid: int, peak: list[int]) -> None:
    """Keep ``peak[0]`` at the largest ``RssAnon`` (KiB) of ``pid`` until it has exited."""
    path = Path(f"/proc/{pid}/status")
    while True:
        try:
            found = re.search(r"^RssAnon:\s+(\d+) kB", path.read_text(), re.MULTILINE)
        except OSError:
            return
        if found is None:  # exited (a zombie has no memory lines)
            return
        peak[0] = max(peak[0], int(found.group(1)))
        time.sleep(0.2)


def table(headers: Sequence[str], rows: Iterable[Iterable[object]]) -> list[str]:
    """A markdown table's lines: the header, its rule and one line a row (cells by ``str``)."""
    return [
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
        *("| " + " | ".join(map(str, row)) + " |" for row in rows),
    ]


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
    """Write ``<out>/<stem>.json`` (``default`` as in ``json.dumps``) and, given ``markdown``,
    ``<out>/<stem>.md``; returns the JSON file's path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}.json"
    path.write_text(json.dumps(report, indent=2, default=default) + "\n", encoding="utf-8")
    if markdown is not None:
        (out / f"{stem}.md").write_text(markdown, encoding="utf-8")
    return path
