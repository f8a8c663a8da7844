"""Whole-process wall of one product's export as ``make demo`` runs it: FP32 then INT8 of one
version (``training.registry_export.export_gated``), in a fresh child process per round.

    python bench/export_wall.py --site /tmp/site --product brick --version v0003
        [--tree before=/tmp/main-before --tree after=.] [--rounds 2] [--out reports/runtime]

``--site``: a folder with ``configs/site.yaml`` and the site's registry holding the trained
version (copied to a scratch folder each round: the copy, never the site, gets the bundles);
``--tree LABEL=PATH``: a checkout whose ``inspection`` package the child imports (default:
``today=`` this one), so an older commit can be timed by today's bench; the trees take turns
round by round (``_report.rounds``), so a drift of the machine's load hits them alike. The child
reports when its imports ended and each export stage began; the wall is taken from outside.
Rows are kept per label in ``<out>/export_wall.json``; ``<out>/export_wall.md`` is rewritten.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

from _report import (
    REPO,
    cpu_description,
    load_average,
    measured,
    previous_report,
    rounds,
    save_report,
    table,
)

STEM = "export_wall"
CHILD = """
import json, sys, time
start = time.perf_counter()
from pathlib import Path
from inspection.core.config import load_site_config
from inspection.core.registry import Registry
from inspection.refine.config import refine_config_in
from inspection.training.export import ExportOptions
from inspection.training.registry_export import RegistryExport, export_gated
imported = time.perf_counter()
site = load_site_config(Path(sys.argv[1]) / "configs" / "site.yaml")
stages = []
gated = export_gated(
    Registry(site.registry_dir), sys.argv[2], ("fp32", "int8"),
    RegistryExport(version=sys.argv[3], configs_dir=site.configs),
    ExportOptions(refine=refine_config_in(site.configs)),
    progress=lambda message: stages.append((round(time.perf_counter() - start, 2), message)),
)
done = time.perf_counter()
print(json.dumps({"imports_s": round(imported - start, 2), "export_s": round(done - imported, 2),
                  "cpu_s": round(time.process_time(), 1),
                  "stages": stages, "refused": gated.refused,
                  "registered": [r.bundle_id for r in gated.results]}))
"""
ISA_ENV = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "OV_CPU_MAX_ISA")


def run_export(site: Path, product: str, version: str, tree: Path) -> dict[str, Any]:
    """One round: the site copied to a scratch folder, exported there by a child process."""
    with tempfile.TemporaryDirectory(prefix="export-wall-") as scratch:
        copy = Path(shutil.copytree(site, Path(scratch) / "site"))
        env = {**os.environ, "PYTHONPATH": str(tree)}
        load = load_average()
        command = [sys.executable, "-c", CHILD, str(copy), product, version]
        stdout, code, wall, peak, _ = measured(command, env=env, stderr=subprocess.DEVNULL)
        if code != 0:
            raise SystemExit(f"the export child exited {code}:\n{stdout[-3000:]}")
        child = json.loads(stdout.strip().splitlines()[-1])
        return {"wall_s": round(wall, 1), "peak_rss_gb": peak, "load_before": load,
                "load_after": load_average(), **child}  # fmt: skip


def markdown(report: dict[str, Any]) -> str:
    rows = []
    for label, entry in report["labels"].items():
        for index, run in enumerate(entry["runs"], 1):
            rows.append((label, index, run["wall_s"], run["imports_s"], run["export_s"],
                         run.get("cpu_s", ""), run["load_before"], run["load_after"],
                         entry["commit"]))  # fmt: skip
    lines = [
        "# One product's export, FP32 + INT8 as `make demo` runs it (`bench/export_wall.py`)",
        "",
        "Wall of a fresh process (interpreter, imports, then `export_gated`) and the CPU seconds of "
        "all its threads, seconds.",
        "",
        *table(
            (
                "label",
                "round",
                "wall",
                "imports",
                "export",
                "cpu",
                "load before",
                "load after",
                "tree at",
            ),
            rows,
        ),
        "",
    ]
    for label, entry in report["labels"].items():
        lines.append(f"- {label}: {entry['cpu']}; {entry['isa_env'] or 'native kernels'}; "
                     f"{entry['product']} {entry['version']}")  # fmt: skip
    return "\n".join(lines) + "\n"


def _round(args: argparse.Namespace, tree: Path, _: int) -> dict[str, Any]:
    return run_export(args.site, args.product, args.version, tree.resolve())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", type=Path, required=True)
    parser.add_argument("--product", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--tree", action="append", default=[], metavar="LABEL=PATH")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "runtime")
    args = parser.parse_args(argv)
    trees = dict(item.split("=", 1) for item in args.tree) or {"today": str(REPO)}
    runs = rounds({label: partial(_round, args, Path(tree)) for label, tree in trees.items()},
                  args.rounds)  # fmt: skip
    report = previous_report(args.out, STEM) or {"labels": {}}
    isa = " ".join(f"{k}={os.environ[k]}" for k in ISA_ENV if k in os.environ)
    for label, tree in trees.items():
        git = ["git", "-C", tree, "rev-parse", "--short", "HEAD"]
        commit = subprocess.run(git, capture_output=True, text=True).stdout.strip() or tree
        report["labels"][label] = {
            "commit": commit, "cpu": cpu_description(), "product": args.product,
            "version": args.version, "runs": runs[label], "isa_env": isa,
        }  # fmt: skip
        for run in runs[label]:
            print(f"{label}: wall {run['wall_s']} s (imports {run['imports_s']}, export "
                  f"{run['export_s']}), load {run['load_before']} -> {run['load_after']}")  # fmt: skip
    save_report(args.out, STEM, report, markdown(report))


if __name__ == "__main__":
    main()
