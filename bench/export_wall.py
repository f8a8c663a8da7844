"""Whole-process wall of products' exports as ``make demo``'s export step runs them: FP32 then
INT8 of one version each (``training.registry_export.export_gated``) and, with ``--promote``,
``runtime.tuning.promote_fastest`` after each, in a fresh child process per round.

    python bench/export_wall.py --site /tmp/site --export brick=v0003 [--export grass=v0002]
        [--promote] [--tree before=/tmp/main-before --tree after=.] [--rounds 2]
        [--out reports/runtime]

``--site``: a folder with ``configs/site.yaml`` and the site's registry holding the trained
versions (copied to a scratch folder each round: the copy, never the site, gets the bundles);
``--export PRODUCT=VERSION``: a product's version to export, in order, in the same child (its
imports paid once, as in the demo); ``--tree LABEL=PATH``: a checkout whose ``inspection``
package the child imports (default: ``today=`` this one), so an older commit can be timed by
today's bench; the trees take turns round by round (``_report.rounds``), so a drift of the
machine's load hits them alike. The child reports its import, export and promotion seconds
and each product's gate outcomes; the wall is taken from outside. Rows are kept per label in
``<out>/export_wall.json``; ``<out>/export_wall.md`` is rewritten, one section per day the
labels were measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from functools import partial
from itertools import groupby
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

from inspection.runtime.hardware import forced_isa

STEM = "export_wall"
CHILD = """
import json, sys, time
start = time.perf_counter()
from pathlib import Path
from inspection.core.config import load_site_config
from inspection.core.registry import Registry
from inspection.core.signing import site_signing_key
from inspection.refine.config import refine_config_in
from inspection.runtime.tuning import promote_fastest
from inspection.training.export import ExportOptions
from inspection.training.registry_export import RegistryExport, export_gated
imported = time.perf_counter()
site = load_site_config(Path(sys.argv[1]) / "configs" / "site.yaml")
registry, promote = Registry(site.registry_dir), sys.argv[2] == "promote"
key = site_signing_key(registry.root)
products, export_s, promote_s = {}, 0.0, 0.0
for item in sys.argv[3:]:
    product, version = item.split("=", 1)
    began = time.perf_counter()
    gated = export_gated(
        registry, product, ("fp32", "int8"),
        RegistryExport(version=version, configs_dir=site.configs),
        ExportOptions(refine=refine_config_in(site.configs)),
    )
    exported = time.perf_counter()
    export_s += exported - began
    products[product] = {
        "refused": gated.refused,
        "gates": {r.bundle_id: r.gate.passed for r in gated.results},
        "image_auroc": {r.bundle_id: r.metadata.evaluation().image_auroc for r in gated.results},
        "miss_rate": {r.bundle_id: r.gate.figures.miss_rate for r in gated.results},
    }
    if promote and gated.results:
        registry.journal.promote(product, gated.results[0].bundle_id, actor="bench", reason="bench")
        record = promote_fastest(registry, product, actor="bench",
                                 public_key=key.public_key() if key else None)
        products[product]["live"] = record.chosen_bundle_id
        promote_s += time.perf_counter() - exported
done = time.perf_counter()
print(json.dumps({"imports_s": round(imported - start, 2), "export_s": round(export_s, 2),
                  "promote_s": round(promote_s, 2), "cpu_s": round(time.process_time(), 1),
                  "products": products}))
"""


def run_export(site: Path, exports: list[str], promote: bool, tree: Path) -> dict[str, Any]:
    """One round: the site copied to a scratch folder, exported there by a child process."""
    with tempfile.TemporaryDirectory(prefix="export-wall-") as scratch:
        copy = Path(shutil.copytree(site, Path(scratch) / "site"))
        env = {**os.environ, "PYTHONPATH": str(tree)}
        load = load_average()
        mode = "promote" if promote else "export"
        command = [sys.executable, "-c", CHILD, str(copy), mode, *exports]
        stdout, code, wall, peak, _ = measured(command, env=env, stderr=subprocess.DEVNULL)
        if code != 0:
            raise SystemExit(f"the export child exited {code}:\n{stdout[-3000:]}")
        child = json.loads(stdout.strip().splitlines()[-1])
        return {"wall_s": round(wall, 1), "peak_rss_gb": peak, "load_before": load,
                "load_after": load_average(), **child}  # fmt: skip


HEADERS = ("label", "round", "wall", "imports", "export", "promote_fastest", "cpu",
           "load before", "load after", "tree at")  # fmt: skip


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Products' export, FP32 + INT8 as `make demo` runs it (`bench/export_wall.py`)",
        "",
        "Wall of a fresh process (interpreter, imports, then `export_gated` of each product and, "
        "where a `promote_fastest` figure is given, the demo's timing of the gated bundles), and "
        "the CPU seconds of all its threads, seconds.",
    ]
    labels = sorted(report["labels"].items(), key=lambda item: item[1].get("measured_at", ""))
    for day, group in groupby(labels, key=lambda item: item[1].get("measured_at", "")[:10]):
        group = list(group)
        rows = [
            (label, index, run["wall_s"], run["imports_s"], run["export_s"],
             run.get("promote_s", ""), run.get("cpu_s", ""), run["load_before"],
             run["load_after"], entry["commit"])
            for label, entry in group
            for index, run in enumerate(entry["runs"], 1)
        ]  # fmt: skip
        lines += ["", f"## {day or 'before 2026-11-30'}", "", *table(HEADERS, rows), ""]
        for label, entry in group:
            what = entry.get("exports") or [f"{entry['product']}={entry['version']}"]
            lines.append(f"- {label}: {entry['cpu']}; {entry['isa_env'] or 'native kernels'}; "
                         f"{', '.join(what)}{' + promote_fastest' if entry.get('promote') else ''}")  # fmt: skip
    return "\n".join(lines) + "\n"


def _round(args: argparse.Namespace, tree: Path, _: int) -> dict[str, Any]:
    return run_export(args.site, args.export, args.promote, tree.resolve())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", type=Path, required=True)
    parser.add_argument("--export", action="append", required=True, metavar="PRODUCT=VERSION")
    parser.add_argument("--promote", action="store_true", help="promote_fastest after each")
    parser.add_argument("--tree", action="append", default=[], metavar="LABEL=PATH")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "runtime")
    args = parser.parse_args(argv)
    trees = dict(item.split("=", 1) for item in args.tree) or {"today": str(REPO)}
    runs = rounds({label: partial(_round, args, Path(tree)) for label, tree in trees.items()},
                  args.rounds)  # fmt: skip
    report = previous_report(args.out, STEM) or {"labels": {}}
    isa = forced_isa()
    for label, tree in trees.items():
        git = ["git", "-C", tree, "rev-parse", "--short", "HEAD"]
        commit = subprocess.run(git, capture_output=True, text=True).stdout.strip() or tree
        report["labels"][label] = {
            "commit": commit, "cpu": cpu_description(), "exports": args.export,
            "promote": args.promote, "runs": runs[label], "isa_env": isa,
            "measured_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        }  # fmt: skip
        for run in runs[label]:
            print(f"{label}: wall {run['wall_s']} s (imports {run['imports_s']}, export "
                  f"{run['export_s']}, promote {run['promote_s']}), load {run['load_before']} -> "
                  f"{run['load_after']}; {json.dumps(run['products'])}")  # fmt: skip
    save_report(args.out, STEM, report, markdown(report))


if __name__ == "__main__":
    main()
