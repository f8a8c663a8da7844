"""The first hour on a PC, measured: the README's two commands on a fresh clone (#94).

    python bench/first_hour.py [--rev HEAD] [--force-avx2] [--label NAME] [--keep]
        [--out reports/tests]

Clones ``--rev`` of this checkout into a temporary folder and runs ``CI=true bash .ci/run`` there
(``make demo``, then ``make test``, each checked to leave the tree clean) with no stdin, as CI
does. A run records the seconds of each demo step (``step <name> done in <s> s``), pytest's
seconds and counts, the whole ``.ci/run``, the CPU's flags and the load before, at its highest
(sampled every 10 s) and after, and is appended to ``<out>/first_hour.json``; ``first_hour.md``
is rewritten from all runs.

#94's targets are for 2 AVX2 cores (an AVX2 CPU without AVX-512): ≤ 240 s of demo steps and
≤ 720 s of pytest. A run says whether it met them only on such a CPU. ``--force-avx2`` runs
with ``runtime.hardware.AVX2_ONLY`` (oneDNN, torch, OpenVINO, MKL, OpenBLAS, numpy and OpenCV
held to their AVX2 kernels): an AVX2 instruction set on an AVX-512 CPU, recorded as such (the
variables in ``forced_env``), never an AVX2-CPU figure.

Run it alone: nothing else CPU-heavy beside it (~20–30 min on 2 cores). The clone (~8 GB with
its virtual environment) is removed after it, unless ``--keep``. Exit 1 when ``.ci/run``
failed (its log's last lines are printed).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _report import REPO, cpu_description, load_average, previous_report, save_report, table

from inspection.runtime.hardware import AVX2_ONLY, cpu_info, forced_isa

STEM = "first_hour"
STEP_LINE = re.compile(r"step (\w+) done in (\d+) s")
PYTEST_SUMMARY = re.compile(r"^=+ (?P<counts>.*\d+ passed.*) in (?P<seconds>[\d.]+)s", re.M)
TARGETS = {"demo_steps_s": 240.0, "pytest_s": 720.0}
"""#94: seconds on 2 AVX2 cores."""


def parse_log(log: str) -> dict[str, Any]:
    """The demo's steps (name -> s), their sum, pytest's seconds and counts from ``.ci/run``'s
    output; a figure the log does not hold (a run that stopped early) is left out."""
    steps = {name: int(s) for name, s in STEP_LINE.findall(log)}
    figures: dict[str, Any] = {"steps": steps}
    if steps:
        figures["demo_steps_s"] = sum(steps.values())
    if summaries := list(PYTEST_SUMMARY.finditer(log)):
        figures["pytest_s"] = float(summaries[-1]["seconds"])
        figures["pytest_counts"] = summaries[-1]["counts"].strip()
    return figures


def cpu_kind(isa: tuple[str, ...], forced: bool) -> str:
    """'AVX2 CPU' (AVX2, no AVX-512), 'AVX2 forced on AVX-512' or 'AVX-512' (native), from
    the CPU's ISA flags (``runtime.hardware.cpu_info().isa``)."""
    if "avx512f" not in isa:
        return "AVX2 CPU" if "avx2" in isa else "no AVX2"
    return "AVX2 forced on AVX-512" if forced else "AVX-512"


def verdict(run: dict[str, Any]) -> str:
    """Whether the run met #94's targets, said only for an AVX2 CPU."""
    if run["cpu_kind"] != "AVX2 CPU":
        return "not an AVX2 CPU: no claim"
    met = [run.get(key, float("inf")) <= limit for key, limit in TARGETS.items()]
    return "both met" if all(met) else "not met"


def run_ci(clone: Path, env: dict[str, str], log_path: Path) -> tuple[int, float, float]:
    """``bash .ci/run`` in ``clone``: (exit code, wall seconds, highest 1-minute load seen)."""
    highest, done = [os.getloadavg()[0]], threading.Event()

    def sample() -> None:
        while not done.wait(10):
            highest[0] = max(highest[0], os.getloadavg()[0])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.monotonic()
    with log_path.open("w", encoding="utf-8") as log:
        code = subprocess.call(
            ["bash", ".ci/run"], cwd=clone, env=env, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    wall = time.monotonic() - start
    done.set()
    sampler.join()
    return code, wall, highest[0]


def measure(rev: str, *, force_avx2: bool, label: str, keep: bool) -> dict[str, Any]:
    """One fresh clone of ``rev`` through ``.ci/run``, as a report row."""
    folder = Path(tempfile.mkdtemp(prefix="first-hour-"))
    clone = folder / "inspection"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    subprocess.run(["git", "checkout", "-q", rev], cwd=clone, check=True)
    commit = subprocess.run(["git", "rev-parse", "--short=8", "HEAD"], cwd=clone,
                            capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    env = {**os.environ, "CI": "true", **(AVX2_ONLY if force_avx2 else {})}
    cpu = cpu_description()
    started, load_before = datetime.now(UTC), load_average()
    code, wall, highest = run_ci(clone, env, folder / "ci.log")
    log = (folder / "ci.log").read_text(encoding="utf-8", errors="replace")
    run = {
        "label": label, "commit": commit, "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu, "cpu_kind": cpu_kind(cpu_info().isa, force_avx2), "forced_avx2": force_avx2,
        "forced_env": forced_isa(env),
        "exit": code, "ci_run_s": round(wall), "load_before": load_before,
        "load_highest": round(highest, 2), "load_after": load_average(), **parse_log(log),
    }  # fmt: skip
    if code != 0:
        print("\n".join(log.splitlines()[-40:]))
    if keep:
        print(f"kept: {clone} (log {folder / 'ci.log'})")
    else:
        shutil.rmtree(folder, ignore_errors=True)
    return run


def _row(run: dict[str, Any]) -> tuple[object, ...]:
    steps = " + ".join(f"{name} {s}" for name, s in run["steps"].items())
    loads = (run["load_before"].split()[0], run["load_highest"], run["load_after"].split()[0])
    return (
        run["started"],
        run["label"],
        run["commit"],
        run["cpu"],
        run["cpu_kind"],
        f"{steps} = {run.get('demo_steps_s', '—')} s",
        f"{run.get('pytest_s', '—')} s ({run.get('pytest_counts', 'no summary')})",
        f"{run['ci_run_s']} s",
        " / ".join(str(x) for x in loads),
        run["exit"],
        verdict(run),
    )


def markdown(runs: list[dict[str, Any]]) -> str:
    rows = [_row(run) for run in runs]
    headers = ("started", "label", "commit", "CPU", "kernels", "demo steps", "pytest",
               "`.ci/run`", "load before / highest / after", "exit", "≤ 240 s and ≤ 720 s")  # fmt: skip
    intro = (
        "# The first hour on a PC: `make demo` and `make test` on a fresh clone "
        "(`bench/first_hour.py`)\n\n#94's targets hold for 2 AVX2 cores (an AVX2 CPU, no AVX-512): "
        '≤ 240 s of demo steps, ≤ 720 s of pytest. "AVX2 forced on AVX-512" rows ran AVX2 '
        "kernels on an AVX-512 CPU: they claim nothing for an AVX2 CPU. Until 2026-11-30 18:00 "
        "UTC those were oneDNN's, torch's and OpenVINO's (`ONEDNN_MAX_CPU_ISA=AVX2 "
        "ATEN_CPU_CAPABILITY=avx2 OV_CPU_MAX_ISA=AVX2`); rows with a `forced_env` in "
        "`first_hour.json` also hold MKL, OpenBLAS, numpy and OpenCV to AVX2 "
        "(`runtime.hardware.AVX2_ONLY`). Load: 1-minute average.\n\n"
    )
    return intro + "\n".join(table(headers, rows)) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rev", default="HEAD", help="the commit of this checkout to clone")
    parser.add_argument("--force-avx2", action="store_true", help="AVX2 kernels on AVX-512")
    parser.add_argument("--label", default="now")
    parser.add_argument("--keep", action="store_true", help="keep the clone and its log")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "tests")
    args = parser.parse_args()
    run = measure(args.rev, force_avx2=args.force_avx2, label=args.label, keep=args.keep)
    runs = [*previous_report(args.out, STEM).get("runs", []), run]
    save_report(args.out, STEM, {"runs": runs}, markdown(runs))
    print(markdown([run]))
    raise SystemExit(1 if run["exit"] != 0 else 0)


if __name__ == "__main__":
    main()
