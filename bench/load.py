"""Load test of the station service: a real uvicorn server on 127.0.0.1, K clients × N requests.

Measures throughput and latency (p50/p95/p99) of acknowledged inspections, then checks the
store: every acknowledged request stored exactly once, blobs present, SQLite integrity.
Writes ``reports/service/load.json`` and refreshes ``reports/service/summary.md``.

    python bench/load.py --registry var/registry --product brick --clients 4 --requests 50
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml
from _report import save_report

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from inspection.core.registry import Registry  # noqa: E402
from inspection.core.signing import site_public_key  # noqa: E402
from inspection.store.store import Store  # noqa: E402
from inspection.store.tokens import create_token  # noqa: E402

REPORTS = REPO / "reports" / "service"
PRODUCT_DEFAULT = "brick"


# ------------------------------------------------------------------------ the server
@dataclass
class Bench:
    """A scratch station: its config, registry, store, a token and the images to send."""

    root: Path
    config_path: Path
    store_url: str
    product: str
    bundle_id: str
    token: str
    images: list[bytes]
    port: int
    server: subprocess.Popen | None = None
    starts: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> float:
        """Start ``inspection serve`` and wait for /healthz; returns seconds to ready."""
        self.starts += 1
        log = open(self.root / f"server-{self.starts}.log", "wb")  # noqa: SIM115 - kept by Popen
        started = time.perf_counter()
        env = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
        self.server = subprocess.Popen(
            [sys.executable, "-m", "inspection", "serve", "--config", str(self.config_path)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = started + timeout
        while time.perf_counter() < deadline:
            if self.server.poll() is not None:
                raise RuntimeError(f"server exited with {self.server.returncode}; see {log.name}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1.0).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not healthy after {timeout} s; see {log.name}")

    def stop(self) -> None:
        """Graceful stop (SIGTERM), waiting for in-flight requests."""
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            self.server.wait(timeout=60)
        self.server = None

    def kill(self) -> None:
        """kill -9: no cleanup, no flush, no goodbye."""
        if self.server is not None:
            self.server.kill()
            self.server.wait(timeout=30)
        self.server = None

    def headers(self, content_type: str = "image/png") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": content_type}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare(args: argparse.Namespace, name: str) -> Bench:
    """A fresh scratch station under ``args.workdir/name`` serving the source's live bundle."""
    root = Path(args.workdir) / name
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    source = Registry(args.registry)
    bundle_dir = source.live_bundle_dir(args.product)
    bundle_id = bundle_dir.name
    registry = Registry(root / "registry")
    registry.add_bundle(args.product, bundle_dir, bundle_id)
    registry.promote(args.product, bundle_id, actor="bench", reason="load test")
    store_url = args.store_url or f"sqlite:///{root / 'inspection.db'}"
    port = free_port()
    core = {
        "store_url": store_url,
        "blob_dir": str(root / "blobs"),
        "registry_dir": str(root / "registry"),
        "products": [args.product],
        "max_pixels": 4_000_000,
    } | signature_policy(args.registry)
    config = {
        "core": core,
        "host": "127.0.0.1",
        "port": port,
        "workers": args.workers,
        "max_upload_bytes": 2_000_000,
    }
    config_path = root / "station.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    store = Store.migrated(store_url, root / "blobs")
    token, _ = create_token(store, "bench-station", "load test")
    store.engine.dispose()
    return Bench(
        root, config_path, store_url, args.product, bundle_id, token, load_images(args), port
    )


def load_images(args: argparse.Namespace) -> list[bytes]:
    """PNG bytes of real images: ``--images`` or the demo product's test split."""
    folder = Path(args.images) if args.images else None
    if folder is None:
        from inspection.data.demo import write_demo_product

        folder = write_demo_product(
            Path(args.workdir) / "datasets", args.product, seed=11, n_train=1,
            n_test_good=4, n_test_per_defect=2, size=args.image_size,
        ) / "test"  # fmt: skip
    paths = sorted(p for p in folder.rglob("*.png") if "ground_truth" not in p.parts)
    if not paths:
        raise SystemExit(f"no PNG images under {folder}")
    return [p.read_bytes() for p in paths[:16]]


# ------------------------------------------------------------------------- clients
@dataclass
class ClientLog:
    """What the clients saw: acknowledged request ids -> inspection ids, latencies, errors."""

    acked: dict[str, str] = field(default_factory=dict)
    images: dict[str, int] = field(default_factory=dict)
    """Request id -> index in ``bench.images`` of the image it sent (a retry resends it)."""
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    gave_up: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, key: str) -> None:
        with self.lock:
            self.statuses[key] = self.statuses.get(key, 0) + 1


def run_clients(
    bench: Bench,
    clients: int,
    requests: int,
    *,
    tag: str,
    retry_for_s: float = 0.0,
    log: ClientLog | None = None,
) -> tuple[ClientLog, float]:
    """K threads each sending N inspections with unique request ids; retries when asked.

    Pass ``log`` to watch acknowledgements while the clients run.
    """
    log = log if log is not None else ClientLog()

    def worker(k: int) -> None:
        with httpx.Client(base_url=bench.base_url, timeout=30.0) as client:
            for i in range(requests):
                request_id = f"{tag}-{k}-{i}"
                index = (k * requests + i) % len(bench.images)
                with log.lock:
                    log.images[request_id] = index
                image = bench.images[index]
                send_until_acked(client, bench, request_id, image, log, retry_for_s)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return log, time.perf_counter() - started


def send_until_acked(
    client: httpx.Client,
    bench: Bench,
    request_id: str,
    image: bytes,
    log: ClientLog,
    retry_for_s: float,
) -> None:
    """One logical request: POST (same request id on every retry) until 200/201 or give up."""
    deadline = time.perf_counter() + retry_for_s
    params = {"product": bench.product, "request_id": request_id, "part_id": request_id}
    while True:
        started = time.perf_counter()
        try:
            response = client.post(
                "/v1/inspect", params=params, content=image, headers=bench.headers()
            )
        except httpx.HTTPError as exc:
            log.count(type(exc).__name__)
        else:
            log.count(str(response.status_code))
            if response.status_code in (200, 201):
                with log.lock:
                    log.acked[request_id] = response.json()["id"]
                    log.latencies_ms.append((time.perf_counter() - started) * 1000.0)
                return
        if time.perf_counter() > deadline:
            with log.lock:
                log.gave_up.append(request_id)
            return
        with log.lock:
            log.retries += 1
        time.sleep(0.2)


class HealthProbe(threading.Thread):
    """GET /healthz every 100 ms during the load: is the event loop still responsive?"""

    def __init__(self, bench: Bench) -> None:
        super().__init__(daemon=True)
        self.bench = bench
        self.latencies_ms: list[float] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.bench.base_url, timeout=30.0) as client:
            while not self._stop_event.wait(0.1):
                started = time.perf_counter()
                client.get("/healthz")
                self.latencies_ms.append((time.perf_counter() - started) * 1000.0)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def percentiles(values_ms: list[float]) -> dict[str, float]:
    if not values_ms:
        return {}
    array = np.asarray(values_ms)
    return {f"p{q}": round(float(np.percentile(array, q)), 2) for q in (50, 95, 99)} | {
        "mean": round(float(array.mean()), 2),
        "max": round(float(array.max()), 2),
    }


# --------------------------------------------------------------------- verification
def verify_store(bench: Bench, acked: dict[str, str], prefix: str) -> dict[str, Any]:
    """Every acknowledged request stored exactly once; blobs present; database consistent."""
    from sqlalchemy import func, select, text

    from inspection.store.models import Inspection

    store = Store(bench.store_url, bench.root / "blobs")
    try:
        with store.session() as session:
            rows = list(
                session.execute(
                    select(Inspection.id, Inspection.part_id, Inspection.request_id).where(
                        Inspection.part_id.like(f"{prefix}-%")
                    )
                )
            )
            blob_rows = list(
                session.execute(
                    select(
                        Inspection.image_sha,
                        Inspection.map_sha,
                        Inspection.mask_sha,
                        Inspection.overlay_sha,
                    )
                )
            )
            total_rows = session.scalar(select(func.count()).select_from(Inspection))
            integrity = None
            if bench.store_url.startswith("sqlite"):
                integrity = session.execute(text("PRAGMA integrity_check")).scalar()
        by_part: dict[str, list[str]] = {}
        for row_id, part_id, _request_id in rows:
            by_part.setdefault(part_id, []).append(row_id)
        missing = sorted(rid for rid, iid in acked.items() if iid not in by_part.get(rid, []))
        duplicated = sorted(part for part, ids in by_part.items() if len(ids) > 1)
        missing_blobs = 0
        for shas in blob_rows:
            for sha in shas:
                try:
                    store.blobs.path(sha)
                except FileNotFoundError:
                    missing_blobs += 1
        return {
            "acknowledged": len(acked),
            "stored_rows": len(rows),
            "stored_distinct_requests": len(by_part),
            "acknowledged_missing": len(missing),
            "missing_examples": missing[:5],
            "duplicated": len(duplicated),
            "stored_but_not_acknowledged": len(set(by_part) - set(acked)),
            "total_rows_in_store": int(total_rows or 0),
            "blobs_referenced_missing": missing_blobs,
            "sqlite_integrity_check": integrity,
        }
    finally:
        store.engine.dispose()


def image_size(data: bytes) -> str:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return f"{image.width}x{image.height}"


def stored_exactly_once(verification: dict[str, Any], total: int) -> bool:
    """The delivery rule of every service run: all ``total`` logical requests acknowledged,
    none of them missing from the store and none stored twice (``verify_store``'s figures)."""
    return (
        verification["acknowledged"] == total
        and verification["acknowledged_missing"] == 0
        and verification["duplicated"] == 0
    )


def run_header(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    """The fields a service-run report starts with: what served, and who sent how much."""
    return {
        "bundle_id": bench.bundle_id,
        "product": bench.product,
        "clients": args.clients,
        "requests_per_client": args.requests,
    }


def signature_policy(source_registry: str | Path) -> dict[str, Any]:
    """The station ``core`` keys for bundles copied from ``source_registry``: its site's
    public key pinned when the site has one (a demo site does), else unsigned allowed."""
    public = site_public_key(source_registry)
    if public is None:
        return {"allow_unsigned_bundles": True}
    return {"bundle_public_key": str(public.resolve())}


def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }


# --------------------------------------------------------------------------- report
def write_summary() -> Path:
    """Render ``summary.md`` from whichever of load.json / fault.json exist."""
    load = _read(REPORTS / "load.json")
    fault = _read(REPORTS / "fault.json")
    lines = ["# Station service: load and fault runs", ""]
    lines += [
        "Measured with `bench/load.py` and `bench/fault.py`: a real `inspection serve` (uvicorn, "
        "one process) on 127.0.0.1 serving a real exported bundle, SQLite store "
        "(WAL, synchronous=FULL), clients over HTTP. The load average at the end of each run is in its JSON; on a "
        "shared machine absolute numbers are pessimistic and noisy.",
        "",
        "The bundle came from the CLI: `inspection data demo --products brick --size 256 "
        "--train 30`, `inspection train -p brick` (PatchCore, `configs/models/patchcore.yaml`, "
        "256 px) and `inspection export -p brick --precision fp32 --promote`.",
        "",
    ]
    if load:
        lat, ver = load["latency_ms"], load["verification"]
        lines += [
            "## Load",
            "",
            f"- bundle `{load['bundle_id']}`, {load['clients']} clients × {load['requests_per_client']} "
            f"requests, {load['image_size']} images, {load['workers']} inference threads, "
            f"machine load average {load['environment'].get('load_average_1m_at_end')} on "
            f"{load['environment']['cpus']} cores",
            f"- throughput **{load['throughput_rps']:.1f} inspections/s**; end-to-end latency "
            f"p50 {lat['p50']} ms, p95 {lat['p95']} ms, p99 {lat['p99']} ms (max {lat['max']} ms)",
            f"- model latency alone (server side): p50 {load['model_latency_ms'].get('p50')} ms, "
            f"p95 {load['model_latency_ms'].get('p95')} ms",
            f"- `/healthz` during the load (event loop responsiveness): p50 "
            f"{load['healthz_latency_under_load_ms'].get('p50')} ms, p95 "
            f"{load['healthz_latency_under_load_ms'].get('p95')} ms",
            f"- acknowledged {ver['acknowledged']} = stored {ver['stored_distinct_requests']}; "
            f"missing {ver['acknowledged_missing']}; duplicated {ver['duplicated']}; "
            f"missing blobs {ver['blobs_referenced_missing']}; "
            f"integrity `{ver['sqlite_integrity_check']}`; non-2xx {load['non_2xx']}",
            "",
        ]
    if fault:
        ver = fault["verification"]
        barrage = fault["bad_input_barrage"]
        lines += [
            "## Fault (kill -9 during load)",
            "",
            f"- {fault['kills']} × `kill -9` of the server mid-load, restarted each time "
            f"(restart to healthy: {', '.join(f'{s:.1f}' for s in fault['restart_seconds'])} s); "
            f"clients retried with the same request id",
            f"- acknowledged {ver['acknowledged']} = stored {ver['stored_distinct_requests']}; "
            f"**lost {ver['acknowledged_missing']}**, **duplicated {ver['duplicated']}**, "
            f"gave up {fault['gave_up']}, client retries {fault['client_retries']} "
            f"(replays of results stored before the kill: {fault['replays']})",
            f"- clients that lost a response: {fault['resent']['sent']} already-acknowledged "
            f"requests sent again → {fault['resent']['replayed_same_id']} answered 200 with the "
            f"stored result, {fault['resent']['new_rows']} new rows",
            f"- database after the kills: integrity `{ver['sqlite_integrity_check']}`, "
            f"referenced blobs missing {ver['blobs_referenced_missing']}",
            f"- bad-input barrage: {barrage['sent']} bad requests, **{barrage['5xx']} × 5xx**, "
            f"status counts {barrage['statuses']}; server still serving afterwards: "
            f"{barrage['still_serving']}",
            "",
        ]
    verdict = _verdict(load, fault)
    lines += ["## Verdict", "", verdict, ""]
    lines += [
        "## Reading the numbers",
        "",
        "- End-to-end latency is mostly queueing: K clients share `workers` inference threads, so "
        "p50 ≈ clients / throughput. The model latency line is the Inspector's own time, inflated "
        "by the two inference threads and everyone else's jobs competing for 2 cores.",
        "- Per request the station also decodes, renders overlay/mask/map and writes four blobs "
        "and one row, each fsynced (SQLite `synchronous=FULL`): durability is paid in latency.",
        "- Restart time is Python imports (FastAPI, SQLAlchemy, OpenVINO) plus compiling the "
        "bundle, on an overloaded machine.",
        "- A kill can land after the commit but before the response; the retry then gets the "
        "stored result (200). Whether that happens in a given run is luck, so the fault run also "
        "re-sends acknowledged requests on purpose (the lost-response case).",
        "- The benches use SQLite; PostgreSQL durability and idempotency are covered by "
        "`tests/service/test_durability.py`.",
        "",
    ]
    path = REPORTS / "summary.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _verdict(load: dict | None, fault: dict | None) -> str:
    checks = []
    for name, report in (("load", load), ("fault", fault)):
        if report:
            ver = report["verification"]
            checks.append(
                (
                    f"{name}: acknowledged = stored",
                    ver["acknowledged"] == ver["stored_distinct_requests"],
                )
            )
            checks.append((f"{name}: 0 lost", ver["acknowledged_missing"] == 0))
            checks.append((f"{name}: 0 duplicated", ver["duplicated"] == 0))
    if fault:
        checks.append(("fault: 0 × 5xx on bad input", fault["bad_input_barrage"]["5xx"] == 0))
    return "\n".join(f"- [{'x' if ok else ' '}] {name}" for name, ok in checks)


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def server_model_latencies(bench: Bench, prefix: str) -> list[float]:
    store = Store(bench.store_url, bench.root / "blobs")
    try:
        from sqlalchemy import select

        from inspection.store.models import Inspection

        with store.session() as session:
            query = select(Inspection.latency_ms).where(Inspection.part_id.like(f"{prefix}-%"))
            return [float(v) for v in session.scalars(query)]
    finally:
        store.engine.dispose()


# ----------------------------------------------------------------------------- main
def parse_args(
    argv: list[str] | None = None, *, defaults: dict | None = None
) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", default="var/registry", help="Registry with a live bundle.")
    parser.add_argument("--product", default=PRODUCT_DEFAULT)
    parser.add_argument("--images", default=None, help="Folder of PNGs (default: demo images).")
    parser.add_argument("--image-size", type=int, default=256, help="Demo image size in pixels.")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=50, help="Requests per client.")
    parser.add_argument("--workers", type=int, default=2, help="Server inference threads.")
    parser.add_argument("--store-url", default=None, help="Default: SQLite in the work dir.")
    parser.add_argument("--workdir", default="var/bench/service")
    parser.add_argument("--kills", type=int, default=2, help="fault.py: kill -9 count.")
    parser.set_defaults(**(defaults or {}))
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 64 or not 1 <= args.requests <= 2000 or not 0 <= args.kills <= 10:
        parser.error("keep it bounded: 1-64 clients, 1-2000 requests per client, 0-10 kills")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    bench = prepare(args, "load")
    ready_s = bench.start()
    try:
        with httpx.Client(base_url=bench.base_url) as client:  # warm-up, not measured
            for image in bench.images[:2]:
                client.post(
                    "/v1/inspect", params={"product": bench.product}, content=image,
                    headers=bench.headers(),
                )  # fmt: skip
        probe = HealthProbe(bench)
        probe.start()
        log, wall_s = run_clients(bench, args.clients, args.requests, tag="load")
        probe.stop()
    finally:
        bench.stop()
    verification = verify_store(bench, log.acked, "load")
    report = {
        **run_header(bench, args),
        "workers": args.workers,
        "image_size": image_size(bench.images[0]),
        "store": "sqlite" if bench.store_url.startswith("sqlite") else "postgresql",
        "server_ready_s": round(ready_s, 2),
        "wall_s": round(wall_s, 2),
        "throughput_rps": round(len(log.acked) / wall_s, 2),
        "latency_ms": percentiles(log.latencies_ms),
        "model_latency_ms": percentiles(server_model_latencies(bench, "load")),
        "healthz_latency_under_load_ms": percentiles(probe.latencies_ms),
        "statuses": log.statuses,
        "non_2xx": sum(n for k, n in log.statuses.items() if k not in ("200", "201")),
        "verification": verification,
        "environment": environment(),
    }
    save_report(REPORTS, "load", report)
    write_summary()
    print(
        json.dumps(
            {k: report[k] for k in ("throughput_rps", "latency_ms", "verification")}, indent=2
        )
    )
    if not stored_exactly_once(verification, args.clients * args.requests):
        raise SystemExit(1)
    return report


if __name__ == "__main__":
    main()
