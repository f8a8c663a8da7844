"""Whole-command wall of ``inspection train`` per stage.

    python bench/train_wall.py --label after --rows brick60=brick:datasets/brick,...
        [--auto weave300=weave:path] [--site site.yaml] [--out reports/training]

Each row runs ``python -m inspection train -p <product> --data <path>`` (CLI defaults) as a
child process and takes its wall clock, as a shell would; the stages come from the command's
log file (``train stages: {...}``, written by ``training.train``). ``--auto``: ``train --auto``
(default budget) and how many candidates it scored. Rows are kept per (label, row) in
``<out>/train_wall.json``, each with the CPU (model, cores, vector ISA) it ran on;
``<out>/train_wall.md`` is rewritten.
"""

from __future__ import annotations

# isort: off
import inspection  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)

# isort: on
import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from _report import cpu_description, load_average, measured, previous_report, save_report, table

STEM = "train_wall"


def run_train(product: str, data: str, site: str, *extra: str) -> dict:
    """Wall seconds of one ``inspection train`` and its stages (from its log file)."""
    data, site = str(Path(data).resolve()), str(Path(site).resolve())
    command = [sys.executable, "-m", "inspection", "train", "-p", product, "--data", data,
               "--site", site, *extra]  # fmt: skip
    load = load_average()
    stdout, code, wall, peak, anon = measured(command)
    if code != 0:
        raise SystemExit(f"{' '.join(command)} exited {code}:\n{stdout[-3000:]}")
    log_file = re.search(r"library logs and warnings: (\S+)", stdout)
    log = Path(log_file.group(1)).read_text(encoding="utf-8") if log_file else ""
    return {"wall_s": round(wall, 1), "peak_rss_gb": peak, "peak_anon_gb": anon,
            "load_before": load, "stages": stages_of(log, wall), "figures": figures_of(stdout),
            "scored": scored_of(stdout)}  # fmt: skip


def stages_of(log: str, wall: float) -> dict[str, float]:
    """``train stages: {...}`` of the log (``{}`` without one); ``load`` (interpreter, imports,
    data check) is the wall clock not in a stage."""
    found = re.search(r"train stages: (\{.*\})", log)
    if not found:
        return {}
    stages = json.loads(found.group(1))
    return {"load": round(wall - sum(stages.values()), 1), **stages}


def figures_of(stdout: str) -> dict[str, Any]:
    """Image AUROC, pixel AUROC, AUPRO and the false-reject cell of the tables it prints."""
    figures: dict[str, Any] = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in re.split(r"[\u2502|]", line) if c.strip()]
        if len(cells) < 3 or not re.fullmatch(r"\S+/v\d+", cells[0]):
            continue
        if "image_auroc" not in figures and len(cells) >= 5:
            values = [float(c) if re.fullmatch(r"\d\.\d+", c) else None for c in cells[2:5]]
            figures |= dict(zip(("image_auroc", "pixel_auroc", "aupro"), values, strict=True))
        elif "of" in cells[2]:
            figures["false_reject"] = cells[2]
    return figures


def scored_of(stdout: str) -> int | None:
    """``--auto``: how many candidates the search scored."""
    found = re.search(r"(\d+) of (\d+) candidates scored", stdout)
    return int(found.group(1)) if found else None


# ------------------------------------------------------------------------------ report
FIGURES = ("image_auroc", "pixel_auroc", "aupro", "false_reject")


def markdown(report: dict) -> str:
    stages = list(
        dict.fromkeys(s for row in report["rows"].values() for s in row.get("stages", {}))
    )
    rows = [[row["label"], row["row"], row.get("images", "-"), row["wall_s"],
             row.get("peak_rss_gb", "-"), row.get("peak_anon_gb", "-"),
             *(row.get("stages", {}).get(s, "-") for s in stages),
             *(row.get("figures", {}).get(k) or "-" for k in FIGURES),
             row.get("cpu", "-"), row["load_before"]]
            for _, row in sorted(report["rows"].items(),
                                 key=lambda kv: (kv[1]["row"], kv[0]))]  # fmt: skip
    lines = [
        "# `inspection train`: whole-command wall per stage\n",
        "Columns of earlier runs (plain anomalib, `make demo`, other checkouts): "
        "`git show a58e469:reports/training/train_wall.md`.\n",
        f"Last command: `{report['command']}`. Each run alone on the machine (nothing else "
        "heavy); `load avg` is the 1/5/15-min load average before each run; `load` the stage "
        "(interpreter, imports, data check).\n",
        *table(["label", "row", "images", "wall s", "peak RSS GB", "peak anon GB", *stages,
                "img AUROC", "px AUROC", "AUPRO", "false reject", "CPU", "load avg"], rows),
    ]  # fmt: skip
    lines += [
        f"\n`--auto` on {row['row']} ({row['label']}): {row['scored']} candidates scored, wall "
        f"{row['wall_s']} s, chosen: {row.get('figures')}."
        for row in report["rows"].values()
        if row.get("scored") is not None
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="after")
    parser.add_argument("--rows", default="", help="name=product:path,...")
    parser.add_argument("--auto", default="", help="name=product:path,... (train --auto)")
    parser.add_argument("--site", default="configs/site.yaml")
    parser.add_argument("--out", type=Path, default=Path("reports/training"))
    args = parser.parse_args()
    report = previous_report(args.out, STEM) or {"rows": {}}
    cpu = cpu_description()
    report |= {"cpu": cpu, "command": " ".join(["python", *sys.argv])}
    for spec, extra in ((args.rows, ()), (args.auto, ("--auto",))):
        for item in filter(None, spec.split(",")):
            name, target = item.split("=", 1)
            product, data = target.split(":", 1)
            row = run_train(product, data, args.site, *extra)
            row |= {"label": args.label, "row": name + (" --auto" if extra else ""), "cpu": cpu,
                    "images": len(list(Path(data, "train", "good").iterdir()))}  # fmt: skip
            report["rows"][f"{args.label}/{row['row']}"] = row
            print(json.dumps(row), flush=True)
            save_report(args.out, STEM, report, markdown(report))


if __name__ == "__main__":
    main()
