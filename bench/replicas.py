"""Two ``inspection serve`` replicas on one PostgreSQL and one blob folder, one killed mid-run.

Clients send every logical request to one replica and fail over to the other with the
same request id when a replica does not answer (what a load balancer or a station client
does). Every ``--dup-every``-th request goes to BOTH replicas at the same moment. Replica A
is ``kill -9``-ed when a third of the requests is acknowledged and restarted. Afterwards:
acknowledged = stored, 0 lost, 0 duplicated, both answers of a duplicate carry one id,
every referenced blob present. Writes ``reports/plant/replicas.json``.

    python bench/replicas.py --clients 4 --requests 40           # 160 logical requests

Needs a PostgreSQL server (``scripts/services.sh`` starts one); a fresh database is created
for the run and dropped afterwards. Without ``--registry`` a tiny PatchCore bundle is trained
on a demo product first (real training and export, ~1 min).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import yaml
from _report import save_report

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from load import (  # noqa: E402
    Bench,
    ClientLog,
    environment,
    free_port,
    percentiles,
    prepare,
    stored_exactly_once,
    verify_store,
)

from inspection.core.registry import Registry  # noqa: E402

REPORTS = REPO / "reports" / "plant"
PG_ADMIN_URL = os.environ.get(
    "INSPECTION_TEST_PG_URL",
    "postgresql+psycopg://inspection:inspection@127.0.0.1:5432/inspection_test",
)


# ------------------------------------------------------------------ database + bundle
def create_database(admin_url: str) -> tuple[str, str]:
    """A fresh, empty database on the admin URL's server; returns (url, name)."""
    import sqlalchemy as sa

    name = f"bench_replicas_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}", name


def drop_database(admin_url: str, name: str) -> None:
    import sqlalchemy as sa

    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def tiny_registry(workdir: Path, product: str) -> Path:
    """A registry with one live FP32 bundle: PatchCore (128 px) trained on a demo product."""
    from inspection.core.product_config import model_config_from_mapping
    from inspection.data.dataset import load_dataset
    from inspection.data.demo import write_demo_product
    from inspection.training.export import ExportOptions
    from inspection.training.registry_export import RegistryExport, export_bundle
    from inspection.training.train import train

    root = workdir / "source-registry"
    registry = Registry(root)
    if registry.live(product) is not None:
        return root
    data = write_demo_product(
        workdir / "train-data",
        product,
        seed=3,
        n_train=24,
        n_test_good=6,
        n_test_per_defect=3,
        size=128,
    )
    config = model_config_from_mapping(
        {"kind": "patchcore", "image_size": [128, 128], "coreset_sampling_ratio": 0.1},
        where="bench/replicas.py",
    )
    record = train(config, load_dataset(data), product=product, registry=registry, progress=False)
    export_bundle(
        registry,
        product,
        ExportOptions(precision="fp32"),
        RegistryExport(version=record.version, promote=True),
    )
    return root


# --------------------------------------------------------------------------- clients
@dataclass
class Log(ClientLog):
    """``load.ClientLog`` plus the failovers and the requests sent to both replicas at once."""

    failovers: int = 0
    dup_pairs: int = 0
    dup_id_mismatches: list[str] = field(default_factory=list)


def send(replicas: list[Bench], first: int, request_id: str, image: bytes, log: Log) -> str | None:
    """POST until acknowledged, starting at ``replicas[first]`` and failing over; inspection id."""
    params = {"product": replicas[0].product, "request_id": request_id, "part_id": request_id}
    deadline = time.perf_counter() + 120.0
    target = first
    while time.perf_counter() < deadline:
        bench = replicas[target]
        started = time.perf_counter()
        try:
            response = httpx.post(
                f"{bench.base_url}/v1/inspect",
                params=params,
                content=image,
                headers=bench.headers(),
                timeout=30.0,
            )
        except httpx.HTTPError as exc:
            log.count(type(exc).__name__)
        else:
            log.count(str(response.status_code))
            if response.status_code in (200, 201):
                inspection_id = response.json()["id"]
                with log.lock:
                    log.acked[request_id] = inspection_id
                    log.latencies_ms.append((time.perf_counter() - started) * 1000.0)
                return inspection_id
        with log.lock:
            log.failovers += 1
        target = (target + 1) % len(replicas)
        time.sleep(0.05)
    with log.lock:
        log.gave_up.append(request_id)
    return None


def send_to_both(replicas: list[Bench], request_id: str, image: bytes, log: Log) -> None:
    """The same request id to both replicas at once: both answers must name one row."""
    ids: list[str | None] = [None, None]
    barrier = threading.Barrier(2)

    def one(slot: int) -> None:
        barrier.wait()
        ids[slot] = send(replicas, slot, request_id, image, log)

    threads = [threading.Thread(target=one, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with log.lock:
        log.dup_pairs += 1
        if None not in ids and ids[0] != ids[1]:
            log.dup_id_mismatches.append(request_id)


def run_clients(replicas: list[Bench], args: argparse.Namespace, log: Log) -> float:
    images = replicas[0].images

    def worker(k: int) -> None:
        for i in range(args.requests):
            request_id = f"rep-{k}-{i}"
            image = images[(k * args.requests + i) % len(images)]
            if i % args.dup_every == 0:
                send_to_both(replicas, request_id, image, log)
            else:
                send(replicas, (k + i) % 2, request_id, image, log)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def kill_and_restart(bench: Bench, total: int, log: Log, timeline: dict[str, Any]) -> None:
    """kill -9 replica A once a third of the requests is acknowledged, then restart it."""
    while len(log.acked) < total // 3:
        time.sleep(0.01)
    bench.kill()
    timeline["killed_after_acked"] = len(log.acked)
    time.sleep(1.0)  # the survivor carries the load alone meanwhile
    timeline["restart_to_healthy_s"] = round(bench.start(), 2)
    timeline["acked_when_back"] = len(log.acked)


# ------------------------------------------------------------------------------ main
def second_replica(bench: Bench) -> Bench:
    """Replica B: the same config (store, blobs, registry, token) on another port."""
    port = free_port()
    config = yaml.safe_load(bench.config_path.read_text(encoding="utf-8")) | {"port": port}
    path = bench.root / "station-b.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return replace(bench, config_path=path, port=port, server=None, starts=0)


def markdown(report: dict[str, Any]) -> str:
    """The report as a short Markdown table (written beside the JSON)."""
    v, kill = report["verification"], report["kill"]
    rows = [
        ("logical requests", report["logical_requests"]),
        ("sent to both replicas at once", report["sent_to_both_at_once"]),
        ("acknowledged / stored distinct", f"{v['acknowledged']} / {v['stored_distinct_requests']}"),
        ("lost (acknowledged, not stored)", v["acknowledged_missing"]),
        ("duplicated rows", v["duplicated"]),
        ("duplicate pairs answered with two ids", report["duplicate_pairs_with_different_ids"]),
        ("stored but never acknowledged", v["stored_but_not_acknowledged"]),
        ("blobs referenced but missing", v["blobs_referenced_missing"]),
        ("replica A kill -9 after acknowledged", kill.get("killed_after_acked")),
        ("replica A restart to healthy (s)", kill.get("restart_to_healthy_s")),
        ("client failovers", report["failovers"]),
        ("throughput (req/s), p50 / p95 latency (ms)",
         f"{report['throughput_rps']}, {report['latency_ms']['p50']} / {report['latency_ms']['p95']}"),
        ("load average (1 min) at end", report["environment"]["load_average_1m_at_end"]),
    ]  # fmt: skip
    lines = [
        "# Two replicas on one PostgreSQL, one killed mid-run",
        "",
        f"`python bench/replicas.py --clients {report['clients']} ...`, product "
        f"{report['product']}, bundle {report['bundle_id']}, {report['environment']['cpus']} CPUs.",
        "",
        "| measure | value |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in rows),
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", default=None, help="Registry with a live bundle.")
    parser.add_argument("--product", default="brick")
    parser.add_argument("--images", default=None, help="Folder of PNGs (default: demo images).")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=40, help="Logical requests per client.")
    parser.add_argument("--dup-every", type=int, default=4, help="Every n-th goes to both.")
    parser.add_argument("--workers", type=int, default=1, help="Inference threads per replica.")
    parser.add_argument("--admin-url", default=PG_ADMIN_URL, help="PostgreSQL to create a DB on.")
    parser.add_argument("--workdir", default="var/bench/replicas")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 32 or not 3 <= args.requests <= 1000 or args.dup_every < 1:
        parser.error("keep it bounded: 1-32 clients, 3-1000 requests each, --dup-every >= 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    workdir = Path(args.workdir)
    args.registry = args.registry or str(tiny_registry(workdir, args.product))
    args.store_url, db_name = create_database(args.admin_url)
    try:
        a = prepare(args, "replicas")
        b = second_replica(a)
        ready = [round(a.start(), 2), round(b.start(), 2)]
        log, timeline = Log(), {}
        total = args.clients * args.requests
        killer = threading.Thread(target=kill_and_restart, args=(a, total, log, timeline))
        killer.start()
        try:
            wall_s = run_clients([a, b], args, log)
        finally:
            killer.join()
            a.stop()
            b.stop()
        verification = verify_store(a, log.acked, "rep")
    finally:
        drop_database(args.admin_url, db_name)
    report = {
        "replicas": 2,
        "store": "postgresql",
        "product": args.product,
        "bundle_id": a.bundle_id,
        "clients": args.clients,
        "logical_requests": total,
        "sent_to_both_at_once": log.dup_pairs,
        "duplicate_pairs_with_different_ids": len(log.dup_id_mismatches),
        "workers_per_replica": args.workers,
        "ready_s": ready,
        "kill": timeline,
        "wall_s": round(wall_s, 2),
        "throughput_rps": round(len(log.acked) / wall_s, 2),
        "latency_ms": percentiles(log.latencies_ms),
        "statuses": log.statuses,
        "failovers": log.failovers,
        "gave_up": len(log.gave_up),
        "verification": verification,
        "environment": environment(),
    }
    save_report(REPORTS, "replicas", report, markdown(report))
    print(json.dumps({k: report[k] for k in ("kill", "failovers", "verification")}, indent=2))
    ok = (
        stored_exactly_once(verification, total)
        and verification["stored_distinct_requests"] == total
        and not log.dup_id_mismatches
    )
    if not ok:
        raise SystemExit(1)
    return report


if __name__ == "__main__":
    main()
