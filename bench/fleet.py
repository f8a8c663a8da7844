"""The nightly fleet: ``inspection retrain --all --ray`` over a site of demo products.

    python bench/fleet.py [--work /tmp/fleet] [--ray 127.0.0.1:6390] [--memory-gb 4]
        [--kinds brick,grass,gravel,weave,tissue,part] [--seeds 1,2] [--train 120]
        [--big weave:1000:2.5] [--out reports/retrain]

Set-up (kept in ``--work``, not timed): one product per demo kind and seed, ``--train`` good
images each at 256 px, each with a promoted INT8 champion; plus ``--big`` (kind:images:GB), a
product with more images whose memory budget (``memory_gb`` in its retrain.yaml) is below
what it needs. Then the whole command runs as a child process, timed from outside; its
outcome lines give each product's status, seconds and its worker's peak RSS.
"""

from __future__ import annotations

# isort: off
import inspection  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)

# isort: on
import argparse
import os
import re
import sys
from pathlib import Path

import yaml
from _report import measured, recorded, save_report, table

OUTCOME = re.compile(
    r"^(?P<product>\S+): (?P<status>promoted|kept|skipped|failed) in (?P<seconds>\d+) s "
    r"\((?P<where>[^,)]*)(?:, peak (?P<peak>[\d.]+) GB)?\): (?P<detail>.*)$"
)


def build_site(
    work: Path, products: dict[str, tuple[str, int, int]], budgets: dict[str, float]
) -> None:
    """Datasets, champions, ``site.yaml`` and ``retrain.yaml`` (with each product's own
    ``memory_gb`` in ``budgets``) under ``work``; champions and datasets only once."""
    # deferred: the training side, set-up only
    from inspection.core.product_config import load_model_config
    from inspection.core.registry import Registry
    from inspection.data.demo import write_demo_product
    from inspection.retrain.demo import train_champion
    from inspection.store.store import Store

    registry = Registry(work / "registry")
    jobs = {}
    for name, (kind, seed, n_train) in products.items():
        data = work / "datasets" / name / kind
        if registry.journal.live(name) is None:
            write_demo_product(data.parent, kind, seed=seed, n_train=n_train, n_test_good=10,
                               n_test_per_defect=4, size=256)  # fmt: skip
            config = load_model_config("patchcore", product=name)
            train_champion(config, data, product=name, registry=registry, actor="bench")
            print(f"champion of {name} ready", flush=True)
        jobs[name] = {"dataset": str(data)} | (
            {"memory_gb": budgets[name]} if name in budgets else {}
        )
    site = {"registry_dir": str(work / "registry"), "store_url": f"sqlite:///{work / 'site.db'}",
            "blob_dir": str(work / "blobs"), "reports_dir": str(work / "reports"),
            "datasets_dir": str(work / "datasets"), "products": list(products)}  # fmt: skip
    (work / "site.yaml").write_text(yaml.safe_dump(site), encoding="utf-8")
    retrain = {"products": jobs, "work_dir": str(work / "retrain")}
    (work / "retrain.yaml").write_text(yaml.safe_dump(retrain), encoding="utf-8")
    Store.migrated(site["store_url"], work / "blobs").engine.dispose()


def run(work: Path, ray: str, memory_gb: float) -> dict:
    """The whole ``retrain --all --ray`` command: wall, peak, exit code and its outcomes."""
    command = [sys.executable, "-m", "inspection", "retrain", "--all", "--ray", ray,
               "--memory-gb", str(memory_gb), "--site", str(work / "site.yaml"),
               "--config", str(work / "retrain.yaml"), "--actor", "bench"]  # fmt: skip
    stdout, code, wall, _, _ = measured(command, env={**os.environ, "COLUMNS": "1000"})
    print(stdout, flush=True)
    outcomes = [m.groupdict() for line in stdout.splitlines() if (m := OUTCOME.match(line))]
    return {"retrain": " ".join(command[1:]), "exit_code": code, "wall_s": round(wall, 1),
            "outcomes": outcomes}  # fmt: skip


def markdown(report: dict) -> str:
    rows = [(o["product"], o["status"], o["seconds"], o["peak"] or "—",
             report["budgets"].get(o["product"], report["memory_gb"]),
             o["detail"][:160].replace("|", "/")) for o in report["outcomes"]]  # fmt: skip
    return "\n".join([
        "# The nightly fleet: `inspection retrain --all` on Ray", "",
        f"> Written by `{report['command']}`. CPU: {report['cpu']}. One Ray "
        f"head on this machine (2 CPUs), 1 CPU per task, a fresh worker per task. Load before "
        f"{report['load_before']}, after {report['load_after']}.", "",
        f"Whole command: **{report['wall_s']} s** wall for {len(report['outcomes'])} products, "
        f"exit code {report['exit_code']} (2: a product failed).", "",
        *table(("product", "status", "seconds", "worker peak RSS (GB)", "budget (GB)", "detail"),
               rows), "",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/fleet"))
    parser.add_argument("--ray", default="127.0.0.1:6390")
    parser.add_argument("--memory-gb", type=float, default=4.0)
    parser.add_argument("--kinds", default="brick,grass,gravel,weave,tissue,part")
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--train", type=int, default=120)
    parser.add_argument("--big", default="weave:1000:2.5", help="kind:images:GB, or ''")
    parser.add_argument("--out", type=Path, default=Path("reports/retrain"))
    args = parser.parse_args(argv)
    products: dict = {f"{kind}-s{seed}": (kind, int(seed), args.train)
                      for seed in args.seeds.split(",") for kind in args.kinds.split(",")}  # fmt: skip
    budgets = {}
    if args.big:
        kind, images, budget = args.big.split(":")
        products[f"{kind}-big"] = (kind, 9, int(images))
        budgets[f"{kind}-big"] = float(budget)
    args.work.mkdir(parents=True, exist_ok=True)
    build_site(args.work, products, budgets)
    with recorded(argv) as env:
        outcome = run(args.work, args.ray, args.memory_gb)
    report = {**env, "memory_gb": args.memory_gb, "budgets": budgets, **outcome}
    save_report(args.out, "fleet", report, markdown(report))
    return report


if __name__ == "__main__":
    main()
