"""Seconds of ``inspection demo``'s data and train steps, of one checkout or several in turn.

    python bench/demo_steps.py --code before=/tmp/main-copy --code now=. --rounds 2
        [--skip export,inspect] [--out reports/runtime]

Each round runs every ``--code`` checkout once, in turn (rounds alternate them): ``python -m
inspection demo --skip <skip>`` on a fresh site beside the checkout's own configs (a temporary
folder, removed after), as a child process whose environment is this one's (force AVX2 kernels
with ``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2``). The steps' seconds are the ones the
demo prints (``step <name> done in <s> s``). Each run records the load before and after it;
every run's demo data and metrics (``reports/<product>/<version>/metrics.json``) are compared
with the first run's: ``same_data`` and ``same_metrics``. ``<out>/demo_steps.json`` keeps the
runs (with the CPU); the markdown report is written by hand from it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _report import cpu_description, load_average, save_report

STEM = "demo_steps"
STEP_LINE = re.compile(r"step (\w+) done in (\d+) s")


def tree_digest(root: Path, pattern: str) -> str:
    """One digest of the relative names and bytes of ``root``'s files matching ``pattern``."""
    digest = hashlib.blake2b()
    for path in sorted(root.rglob(pattern)):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def run_demo(code: Path, skip: str) -> dict[str, Any]:
    """One demo run of checkout ``code`` on a fresh site: its steps' seconds, load and digests."""
    with tempfile.TemporaryDirectory(prefix="demo-steps-") as folder:
        site = Path(folder)
        shutil.copytree(code / "configs", site / "configs")
        env = {**os.environ, "PYTHONPATH": str(code)}
        command = [sys.executable, "-m", "inspection", "demo", "--skip", skip,
                   "--site", str(site / "configs" / "site.yaml")]  # fmt: skip
        load_before = load_average()
        done = subprocess.run(command, cwd=code, env=env, capture_output=True, text=True)
        load_after = load_average()
        if done.returncode != 0:
            raise SystemExit(
                f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-3000:]}"
            )
        steps = {name: int(s) for name, s in STEP_LINE.findall(done.stdout)}
        return {
            "steps": steps,
            "total_s": sum(steps.values()),
            "load_before": load_before,
            "load_after": load_after,
            "data": tree_digest(site / "datasets", "*.png"),
            "metrics": tree_digest(site / "reports", "metrics.json"),
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", action="append", required=True, help="label=checkout folder")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip", default="export,inspect", help="demo steps not run")
    parser.add_argument("--out", type=Path, default=Path("reports/runtime"))
    args = parser.parse_args(argv)
    codes = dict(item.split("=", 1) for item in args.code)
    report: dict[str, Any] = {"cpu": cpu_description(), "skip": args.skip, "runs": []}
    for round_ in range(1, args.rounds + 1):
        for label, code in codes.items():
            run = {"label": label, "round": round_, **run_demo(Path(code).resolve(), args.skip)}
            first = report["runs"][0] if report["runs"] else run
            run["same_data"] = run["data"] == first["data"]
            run["same_metrics"] = run["metrics"] == first["metrics"]
            report["runs"].append(run)
            print(run, flush=True)
            save_report(args.out, STEM, report)


if __name__ == "__main__":
    main()
