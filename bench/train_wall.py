"""Whole-command wall of ``inspection train`` per stage, against plain anomalib fit + test.

    python bench/train_wall.py --label after --rows brick60=brick:datasets/brick,...
        [--anomalib brick60,weave120] [--auto weave300=weave:path] [--code /path/to/checkout]
        [--site site.yaml] [--out reports/training]

Each row runs ``python -m inspection train -p <product> --data <path>`` (CLI defaults) as a
child process and takes its wall clock, as a shell would; the stages come from the command's
log file (``train stages: {...}``, written by ``training.train``; for code older than that line,
``git show c8e87af:bench/train_wall.py`` reads the log lines' timestamps). ``--anomalib`` (rows
named, or all): per row, plain anomalib (its ``Patchcore`` with ``KCenterGreedy``, same
backbone, layers, image size and coreset ratio) ``Engine.fit`` + ``Engine.test`` on the same
images, also a child process timed from outside. ``--code``: run
another checkout's ``inspection`` (e.g. ``git archive`` of an earlier commit: the "before").
``--auto``: ``train --auto`` (default budget) and how many candidates it scored. ``--demo``:
``make demo`` in a fresh copy of the tree (``make install`` done there).
Rows are kept per (label, row) in ``<out>/train_wall.json``, each with the CPU (model, cores,
vector ISA) it ran on; ``<out>/train_wall.md`` is rewritten.
"""

from __future__ import annotations

# isort: off
import inspection  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)

# isort: on
import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from _report import cpu_description, load_average, previous_report, save_report

STAGES = ("load", "fit", "local_statistics", "validation", "out_of_fold", "calibration",
          "evaluation", "report", "registry")  # fmt: skip
STEM = "train_wall"


def run_train(product: str, data: str, site: str, code: str | None, *extra: str) -> dict:
    """Wall seconds of one ``inspection train`` and its stages (from its log file)."""
    env = dict(os.environ, **({"PYTHONPATH": code} if code else {}))
    data, site = str(Path(data).resolve()), str(Path(site).resolve())
    command = [sys.executable, "-m", "inspection", "train", "-p", product, "--data", data,
               "--site", site, *extra]  # fmt: skip
    load = load_average()
    # -m puts the working folder first on sys.path: run in ``code`` so that it is imported
    stdout, code_, wall, peak, anon = measured(command, env=env, cwd=code)
    if code_ != 0:
        raise SystemExit(f"{' '.join(command)} exited {code_}:\n{stdout[-3000:]}")
    log_file = re.search(r"library logs and warnings: (\S+)", stdout)
    log = Path(log_file.group(1)).read_text(encoding="utf-8") if log_file else ""
    return {"wall_s": round(wall, 1), "peak_rss_gb": peak, "peak_anon_gb": anon,
            "load_before": load, "stages": stages_of(log, wall), "figures": figures_of(stdout),
            "scored": scored_of(stdout)}  # fmt: skip


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


def run_demo(folder: str) -> dict:
    """Wall seconds of ``make demo`` in ``folder`` (a fresh copy of the tree, ``make install``
    done: its data is written too) and of each step, as the command prints them."""
    load = load_average()
    started = time.perf_counter()
    done = subprocess.run(["make", "demo"], capture_output=True, text=True, check=False, cwd=folder)
    wall = time.perf_counter() - started
    steps = dict(re.findall(r"step (\w+) done in (\d+) s", done.stdout))
    return {"label": "demo", "row": "make demo", "wall_s": round(wall, 1), "load_before": load,
            "exit_code": done.returncode, "steps": {k: int(v) for k, v in steps.items()}}  # fmt: skip


# ------------------------------------------------------------------------ plain anomalib
def run_anomalib(product: str, data: str) -> dict:
    """Wall seconds of plain anomalib fit + test (a child process, like ``run_train``)."""
    load = load_average()
    command = [sys.executable, __file__, "--anomalib-child", f"{product}:{data}"]
    stdout, code, wall, peak, _ = measured(command)
    if code != 0:
        raise SystemExit(f"plain anomalib exited {code}:\n{stdout[-3000:]}")
    return {"wall_s": round(wall, 1), "peak_rss_gb": peak, "load_before": load,
            **json.loads(stdout.strip().splitlines()[-1])}  # fmt: skip


def anomalib_child(product: str, data: str) -> None:
    """anomalib's Patchcore (KCenterGreedy), our product config's backbone, layers, size and
    ratio, bundled weights; Engine.fit then Engine.test on the held-out split."""
    import lightning
    from anomalib.engine import Engine
    from anomalib.models import Patchcore

    from inspection.core.product_config import load_model_config
    from inspection.data.dataset import load_dataset
    from inspection.training.backbones import apply_weights, no_pretrained_download, resolve_weights
    from inspection.training.models.common import pre_processor
    from inspection.training.train import evaluation_splits, make_loader

    config = load_model_config("patchcore", product=product)
    dataset = load_dataset(Path(data))
    validation, test = evaluation_splits(config, dataset)
    weights = resolve_weights(config.backbone.name, config.backbone.weights, None)
    lightning.seed_everything(config.seed, verbose=False)
    with no_pretrained_download():
        model = Patchcore(backbone=config.backbone.name, layers=list(config.backbone.layers),
                          pre_trained=False, coreset_sampling_ratio=config.coreset_sampling_ratio,
                          num_neighbors=config.num_neighbors,
                          pre_processor=pre_processor(config, weights), visualizer=False)  # fmt: skip
    apply_weights(model.model.feature_extractor.feature_extractor, weights)
    engine = Engine(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                    default_root_dir=f"/tmp/anomalib-{os.getpid()}")  # fmt: skip
    started = time.perf_counter()
    engine.fit(model, train_dataloaders=make_loader(dataset.train_samples, config),
               val_dataloaders=make_loader(validation, config))  # fmt: skip
    fit_s = time.perf_counter() - started
    results = engine.test(model, dataloaders=make_loader(test, config), verbose=False)[0]
    print(json.dumps({"fit_s": round(fit_s, 1),
                      "image_auroc": round(float(results.get("image_AUROC", float("nan"))), 4)}))  # fmt: skip


# ------------------------------------------------------------------------------ report
def markdown(report: dict) -> str:
    lines = [
        "# `inspection train`: whole-command wall per stage\n",
        f"Last command: `{report['command']}`. Each run alone on the machine (nothing else "
        "heavy); `load avg` is the 1/5/15-min load average before each run; `load` the stage "
        "(interpreter, imports, data check).\n",
        "| code | row | images | wall s | peak RSS GB | peak anon GB | "
        + " | ".join(STAGES)
        + " | plain anomalib fit+test s | ratio | img AUROC | px AUROC | AUPRO | false reject "
        "| CPU | load avg |",
        "|" + " --- |" * (len(STAGES) + 14),
    ]
    by_row = sorted(report["rows"], key=lambda k: (report["rows"][k]["row"], k))
    for key in by_row:  # each row's runs side by side: a per-stage profile, before and after
        row = report["rows"][key]
        stages = row.get("stages", {})
        plain = row.get("anomalib", {}).get("wall_s")
        ratio = f"{plain / row['wall_s']:.1f}x" if plain else "-"
        fig = row.get("figures", {})
        lines.append(
            f"| {row['label']} | {row['row']} | {row.get('images', '-')} | {row['wall_s']} | "
            f"{row.get('peak_rss_gb', '-')} | {row.get('peak_anon_gb', '-')} | "
            + " | ".join(str(stages.get(s, "-")) for s in STAGES)
            + f" | {plain or '-'} | {ratio} | "
            + " | ".join(
                str(fig.get(k) or "-")
                for k in ("image_auroc", "pixel_auroc", "aupro", "false_reject")
            )
            + f" | {row.get('cpu', report.get('cpu', '-'))} | {row['load_before']} |"
        )
    demo = report.get("demo")
    if demo:
        lines.append(f"\n`make demo` in a fresh copy of the tree (data, train, export, inspect; "
                     f"{demo['label']}, {demo.get('cpu', '-')}): {demo['wall_s']} s wall, "
                     f"steps {demo['steps']} s, exit code "
                     f"{demo['exit_code']}, load before {demo['load_before']}.")  # fmt: skip
    autos = [r for r in report["rows"].values() if r.get("scored") is not None]
    for row in autos:
        lines.append(f"\n`--auto` on {row['row']} ({row['label']}): {row['scored']} candidates "
                     f"scored, wall {row['wall_s']} s, chosen: {row.get('figures')}.")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="after")
    parser.add_argument("--rows", default="", help="name=product:path,...")
    parser.add_argument("--auto", default="", help="name=product:path,... (train --auto)")
    parser.add_argument(
        "--anomalib",
        nargs="?",
        const="all",
        default="",
        help="plain anomalib fit+test too: for these rows (default: all)",
    )
    parser.add_argument("--code", default=None)
    parser.add_argument("--site", default="configs/site.yaml")
    parser.add_argument("--out", type=Path, default=Path("reports/training"))
    parser.add_argument("--demo", default=None, help="a fresh copy of the tree: time make demo")
    parser.add_argument("--anomalib-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.anomalib_child:
        anomalib_child(*args.anomalib_child.split(":", 1))
        return
    report = previous_report(args.out, STEM) or {"rows": {}}
    for row in report["rows"].values():  # rows of earlier runs keep the CPU they ran on
        row.setdefault("cpu", report.get("cpu", "-"))
    cpu = cpu_description()
    report |= {"cpu": cpu, "command": " ".join(["python", *sys.argv])}
    anomalib_rows = set(args.anomalib.split(","))
    if args.demo:
        report["demo"] = run_demo(args.demo) | {"label": args.label, "cpu": cpu}
        print(json.dumps(report["demo"]), flush=True)
        save_report(args.out, STEM, report, markdown(report))
    for spec, extra in ((args.rows, ()), (args.auto, ("--auto",))):
        for item in filter(None, spec.split(",")):
            name, target = item.split("=", 1)
            product, data = target.split(":", 1)
            row = run_train(product, data, args.site, args.code, *extra)
            row |= {"label": args.label, "row": name + (" --auto" if extra else ""), "cpu": cpu,
                    "images": len(list(Path(data, "train", "good").iterdir()))}  # fmt: skip
            if anomalib_rows & {"all", name} and not extra:
                row["anomalib"] = run_anomalib(product, data)
            report["rows"][f"{args.label}/{row['row']}"] = row
            print(json.dumps(row), flush=True)
            save_report(args.out, STEM, report, markdown(report))


if __name__ == "__main__":
    main()
