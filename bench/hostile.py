"""Hostile-input barrage against a real ``inspection serve`` (uvicorn, SQLite, OpenVINO).

Sends >= 300 hostile requests across the classes of the attack run (issue 14): bad tokens,
pixel bombs and 100000x1 strips, formats outside the allow-list, garbage and truncated
bytes, oversized bodies, hostile query values, control characters, replays with another
payload, multipart garbage, slow and vanishing clients, cross-station reads, station tokens
on write and ops APIs, and tampered bundles promoted while serving. Then checks: no 5xx
(a 503 + Retry-After from admission control is counted apart as load shedding), the server
healthy and still inspecting, peak RSS, orphan blobs, tracebacks in the server log.
Writes ``reports/security/hostile.json`` and ``hostile.md``.

    python bench/hostile.py --registry var/registry --product brick   (or --bundle DIR)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml
from _report import cpu_description, load_average, save_report
from _station import free_port  # the benches' helpers; run as `python bench/hostile.py`
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from inspection.core.bundle import read_bundle_metadata, write_bundle_metadata  # noqa: E402
from inspection.core.registry import Registry  # noqa: E402
from inspection.core.signing import init_keys, load_private_key, pin_file, sign_bundle  # noqa: E402
from inspection.store.store import Store  # noqa: E402
from inspection.store.tokens import create_token  # noqa: E402

REPORTS = REPO / "reports" / "security"


def encoded(width: int, height: int, fmt: str = "PNG", color: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (color, 60, 40)).save(buffer, fmt)
    return buffer.getvalue()


class Station:
    """A scratch station serving a signed copy of the source registry's live bundle."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.root = Path(args.workdir)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        self.product = args.product
        self.keys = init_keys(self.root / "keys")
        source = args.bundle or Registry(args.registry).live_bundle_dir(args.product)
        self.bundle_id = "v0001-fp32"
        self.signed = self.root / "signed"
        shutil.copytree(source, self.signed)
        write_bundle_metadata(self.signed, read_bundle_metadata(self.signed))
        sign_bundle(self.signed, load_private_key(self.keys.private))
        self.registry = Registry(self.root / "registry")
        self.registry.add_bundle(self.product, self.signed, self.bundle_id)
        self.registry.promote(self.product, self.bundle_id, actor="bench", reason="hostile")
        self.port = free_port()
        core = {
            "store_url": f"sqlite:///{self.root / 'station.db'}",
            "blob_dir": str(self.root / "blobs"),
            "registry_dir": str(self.root / "registry"),
            "products": [self.product],
            "registry_poll_seconds": 0.5,
            "signing_keys": [
                {
                    "fingerprint": pin_file(self.keys.public).fingerprint,
                    "path": str(self.keys.public),
                }
            ],
        }
        config = {
            "core": core,
            "port": self.port,
            "workers": 2,
            "max_in_flight": 8,
            "body_timeout_seconds": 3.0,
        }
        self.config_path = self.root / "station.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        store = Store.migrated(core["store_url"], core["blob_dir"])
        self.tokens = {
            name: create_token(store, name, "bench", role=role)[0]
            for name, role in [("st-1", "station"), ("st-2", "station"), ("mon", "monitor")]
        }
        store.engine.dispose()
        self.server: subprocess.Popen | None = None
        self.log_path = self.root / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}

    def start(self) -> None:
        log = open(self.log_path, "wb")  # noqa: SIM115 - kept by Popen
        env = os.environ | {"OMP_NUM_THREADS": "2"}
        command = [sys.executable, "-m", "inspection", "serve", "-c", str(self.config_path)]
        self.server = subprocess.Popen(
            command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"server not healthy; see {self.log_path}")

    def stop(self) -> None:
        if self.server is not None:
            self.server.terminate()
            self.server.wait(timeout=60)


class RssProbe(threading.Thread):
    """Samples the server's resident set size every 20 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.02)


class Barrage:
    def __init__(self, station: Station, images: list[bytes]) -> None:
        self.station = station
        self.images = images
        self.client = httpx.Client(base_url=station.url, timeout=60)
        self.results: dict[str, Counter] = defaultdict(Counter)
        self.unexpected: list[str] = []

    def record(self, cls: str, status: int, expect: tuple[int, ...], what: str = "") -> None:
        self.results[cls][status] += 1
        if status not in expect:
            self.unexpected.append(f"{cls}: {what} -> {status}")

    def inspect(self, data: bytes, *, token: str = "st-1", ctype: str = "image/png", **params: Any):
        params.setdefault("product", self.station.product)
        headers = self.station.auth(token) | {"Content-Type": ctype}
        return self.client.post("/v1/inspect", params=params, content=data, headers=headers)

    # ---------------------------------------------------------------- classes
    def auth(self) -> None:
        for header in [
            None,
            "Bearer",
            "Basic dXNlcjpwdw==",
            "Bearer insp_fake",
            "Bearer " + "x" * 5000,
        ]:
            for _ in range(4):
                headers = {"Content-Type": "image/png"} | (
                    {"Authorization": header} if header else {}
                )
                status = self.client.post(
                    "/v1/inspect",
                    params={"product": "brick"},
                    content=self.images[0],
                    headers=headers,
                ).status_code
                self.record("bad token", status, (401,), str(header)[:20])

    def sizes(self) -> None:
        cases = [(100_000, 1), (1, 70_000), (6000, 6000), (20_000, 20_000), (16_385, 2)]
        for width, height in cases:
            data = encoded(width, height)
            for _ in range(4):
                self.record(
                    "pixel bomb / strip",
                    self.inspect(data).status_code,
                    (400,),
                    f"{width}x{height}",
                )

    def formats(self) -> None:
        eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
        for name, data in [
            ("GIF", encoded(16, 16, "GIF")),
            ("WEBP", encoded(16, 16, "WEBP")),
            ("ICO", encoded(16, 16, "ICO")),
            ("PPM", encoded(16, 16, "PPM")),
            ("EPS", eps),
        ]:
            for _ in range(4):
                self.record(
                    "format outside allow-list", self.inspect(data).status_code, (400,), name
                )

    def garbage(self, rng: random.Random) -> None:
        prefixes = [
            b"",
            self.images[0][:16],
            self.images[0][:300],
            b"\xff\xd8\xff",
            b"BM",
            b"II*\x00",
        ]
        for i in range(60):
            data = rng.choice(prefixes) + rng.randbytes(rng.randint(0, 2048))
            ctype = rng.choice(["image/png", "image/jpeg", "application/octet-stream"])
            status = self.inspect(data, ctype=ctype, request_id=f"g{i}").status_code
            self.record("garbage / truncated bytes", status, (400,), f"#{i}")
        for ctype in ["text/plain", "application/json", ""]:
            self.record(
                "garbage / truncated bytes",
                self.inspect(self.images[0], ctype=ctype).status_code,
                (415,),
                ctype,
            )

    def oversized(self) -> None:
        big = os.urandom(21_000_000)
        for _ in range(3):
            self.record("oversized body", self.inspect(big).status_code, (413,), "21 MB")

    def queries(self) -> None:
        urls = [
            f"/v1/inspections?offset={2**63}",
            f"/v1/inspections?offset={2**31}",
            "/v1/inspections?limit=100000",
            "/v1/inspections?limit=-1",
            "/v1/inspections?since=yesterday",
            "/v1/inspections?verdict=%00",
            "/v1/inspections/" + "a" * 5000,
            "/v1/inspections/..%2F..%2Fetc/image",
            "/v1/blobs/..%2Fstation.db",
            "/v1/blobs/" + "g" * 64,
        ]
        for url in urls:
            for _ in range(2):
                status = self.client.get(url, headers=self.station.auth("st-1")).status_code
                self.record("hostile query values", status, (404, 422), url[:40])

    def fields(self) -> None:
        cases = [
            {"part_id": "p\x00q"},
            {"part_id": "a\nb"},
            {"part_id": "p" * 129},
            {"request_id": "../etc"},
            {"request_id": "r" * 81},
            {"request_id": "a\x00"},
            {"product": "brick\x00"},
            {"product": "x" * 5000},
            {"product": ""},
            {"product": "../brick"},
        ]
        for params in cases:
            for _ in range(2):
                status = self.inspect(self.images[0], **params).status_code
                self.record("hostile fields", status, (404, 422), str(params)[:30])

    def replays(self) -> None:
        for i in range(10):
            rid = f"part-{i}"
            first = self.inspect(self.images[0], request_id=rid).status_code
            self.record("replay with another payload", first, (201,), "first")
            self.record(
                "replay with another payload",
                self.inspect(self.images[1], request_id=rid).status_code,
                (409,),
                "other image",
            )
            self.record(
                "replay with another payload",
                self.inspect(b"", request_id=rid).status_code,
                (400,),
                "empty",
            )
            self.record(
                "replay with another payload",
                self.inspect(self.images[0], request_id=rid).status_code,
                (200,),
                "same",
            )

    def multipart(self, rng: random.Random) -> None:
        for i in range(15):
            body = (
                b"--XyZ\r\n"
                + rng.randbytes(rng.randint(0, 500))
                + (b"\r\n--XyZ--\r\n" if i % 2 else b"")
            )
            status = self.inspect(body, ctype="multipart/form-data; boundary=XyZ").status_code
            self.record("multipart garbage", status, (400, 422), f"#{i}")

    def slow_and_gone(self) -> None:
        """Raw sockets: 4 clients that trickle, 10 that vanish mid-upload."""
        head = (
            f"POST /v1/inspect?product={self.station.product} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {self.station.tokens['st-1']}\r\nContent-Type: image/png\r\n"
            "Content-Length: 100000\r\n\r\n"
        ).encode()

        def trickle() -> None:
            with socket.create_connection(("127.0.0.1", self.station.port), timeout=30) as sock:
                sock.sendall(head)
                try:
                    for _ in range(50):
                        sock.sendall(b"\x89PNG")
                        time.sleep(0.2)
                except OSError:
                    pass
                try:
                    reply = sock.recv(200).split(b" ", 2)
                    self.record("slow client", int(reply[1]), (408,), "trickle")
                except (OSError, IndexError, ValueError):
                    self.record("slow client", 0, (408,), "no reply")

        threads = [threading.Thread(target=trickle) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for _ in range(10):
            with socket.create_connection(("127.0.0.1", self.station.port), timeout=10) as sock:
                sock.sendall(head + self.images[0][:500])
            self.record("client disconnects", 499, (499,), "closed mid-upload")

    def cross_station(self) -> dict[str, int]:
        """st-2 tries to read everything st-1 stored; counts successes (must be 0)."""
        rows = self.client.get(
            "/v1/inspections", params={"limit": 20}, headers=self.station.auth("st-1")
        ).json()["items"]
        attempts = successes = 0
        for row in rows[:6]:
            urls = [f"/v1/inspections/{row['id']}", *row["links"].values()]
            urls += [f"/v1/blobs/{sha}" for sha in row["blobs"].values() if sha]
            for url in urls:
                status = self.client.get(url, headers=self.station.auth("st-2")).status_code
                attempts += 1
                successes += status == 200
                self.record("cross-station read", status, (403, 404), url[:40])
        listing = self.client.get(
            "/v1/inspections", params={"station_id": "st-1"}, headers=self.station.auth("st-2")
        )
        attempts += 1
        successes += listing.status_code == 200
        self.record("cross-station read", listing.status_code, (403,), "list st-1")
        own = self.client.get("/v1/inspections", headers=self.station.auth("st-2")).json()
        leaked = [item for item in own["items"] if item["station_id"] != "st-2"]
        successes += len(leaked)
        return {"attempts": attempts, "succeeded": successes}

    def privilege(self) -> None:
        product = self.station.product
        writes = [
            ("/v1/products/{p}/threshold", {"value": 0.9, "reason": "x"}),
            ("/v1/products/{p}/promote", {"bundle_id": "v1", "reason": "x"}),
            ("/v1/products/{p}/rollback", {"reason": "x"}),
        ]
        for url, body in writes:
            for _ in range(2):
                status = self.client.post(
                    url.format(p=product), json=body, headers=self.station.auth("st-1")
                ).status_code
                self.record("station token on admin/ops APIs", status, (403,), url)
        for _ in range(4):
            self.record(
                "station token on admin/ops APIs",
                self.client.get("/metrics", headers=self.station.auth("st-1")).status_code,
                (403,),
                "metrics",
            )
            self.record(
                "station token on admin/ops APIs",
                self.client.get("/metrics").status_code,
                (401,),
                "metrics anon",
            )

    def burst(self) -> Counter:
        """24 simultaneous valid uploads against max_in_flight=8: the excess is shed with 503."""
        statuses: Counter = Counter()
        retry_after: set[str] = set()
        lock = threading.Lock()

        def one(i: int) -> None:
            response = self.inspect(self.images[i % len(self.images)], request_id=f"burst-{i}")
            with lock:
                statuses[response.status_code] += 1
                if response.status_code == 503:
                    retry_after.add(response.headers.get("retry-after", "missing"))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(24)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return Counter(
            {**statuses, "retry_after": len(retry_after - {"missing"}) if 503 in statuses else 0}
        )


def tamper_round(station: Station, barrage: Barrage) -> dict[str, Any]:
    """Promote three tampered bundles while serving; each must be refused, v1 keeps serving."""
    out = {}
    cases = {
        "metadata edited (threshold 0.999)": "meta",
        "weights rewritten + checksums recomputed": "weights",
        "unsigned": "unsigned",
    }
    for n, (label, kind) in enumerate(cases.items(), start=2):
        bundle_id = f"v000{n}-fp32"
        copy = station.root / bundle_id
        shutil.copytree(station.signed, copy)
        if kind == "meta":
            data = json.loads((copy / "metadata.json").read_text())
            data["image_threshold"] = 0.999
            (copy / "metadata.json").write_text(json.dumps(data))
        elif kind == "weights":
            blob = bytearray((copy / "model.bin").read_bytes())
            blob[len(blob) // 2] ^= 0xFF
            (copy / "model.bin").write_bytes(bytes(blob))
            write_bundle_metadata(copy, read_bundle_metadata(copy))
        else:
            (copy / "signature.json").unlink()
        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "inspection",
                "bundle",
                "verify",
                str(copy),
                "--public-key",
                str(station.keys.public),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        station.registry.add_bundle(station.product, copy, bundle_id)
        station.registry.promote(station.product, bundle_id, actor="attacker", reason=label)
        deadline = time.monotonic() + 30
        problem = None
        while time.monotonic() < deadline and not problem:
            time.sleep(0.5)
            health = barrage.client.get("/healthz", headers=station.auth("mon")).json()
            problem = health["products"][station.product]["problem"]
        status = barrage.inspect(barrage.images[0]).status_code
        health = barrage.client.get("/healthz", headers=station.auth("mon")).json()
        served = f"{health['products'][station.product]['served_bundle_id']} (HTTP {status})"
        out[label] = {
            "cli_refused": cli.returncode != 0,
            "cli_message": (cli.stderr + cli.stdout).strip().splitlines()[-1][:160],
            "hot_swap_refused": bool(problem) and "rejected" in problem,
            "still_serving": served,
            "problem": (problem or "")[:200],
        }
    return out


def orphan_blobs(station: Station) -> dict[str, int]:
    with sqlite3.connect(station.root / "station.db") as db:
        referenced = {
            sha
            for row in db.execute(
                "SELECT image_sha, map_sha, mask_sha, overlay_sha FROM inspections"
            )
            for sha in row
            if sha
        }
    files = {
        p.name.split(".")[0]
        for p in (station.root / "blobs").rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }
    return {
        "blob_files": len(files),
        "referenced": len(referenced),
        "orphans": len(files - referenced),
        "missing": len(referenced - files),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", help="Registry with a live bundle for --product.")
    parser.add_argument("--bundle", type=Path, help="A bundle folder (instead of --registry).")
    parser.add_argument("--product", default="brick")
    parser.add_argument(
        "--images", default="datasets/brick/test/good", help="Folder of valid images."
    )
    parser.add_argument("--workdir", default="/tmp/hostile-bench")
    args = parser.parse_args()
    images = [p.read_bytes() for p in sorted(Path(args.images).glob("*.png"))[:4]]
    station = Station(args)
    station.start()
    probe = RssProbe(station.server.pid)
    probe.start()
    barrage = Barrage(station, images)
    rng = random.Random(14)
    load_before = load_average()
    started = time.perf_counter()
    for step in (
        barrage.auth,
        barrage.sizes,
        barrage.formats,
        lambda: barrage.garbage(rng),
        barrage.oversized,
        barrage.queries,
        barrage.fields,
        barrage.replays,
        lambda: barrage.multipart(rng),
        barrage.slow_and_gone,
        barrage.privilege,
    ):
        step()
    cross = barrage.cross_station()
    burst = barrage.burst()
    tampering = tamper_round(station, barrage)
    seconds = time.perf_counter() - started
    health = barrage.client.get("/healthz", headers=station.auth("mon"))
    after = barrage.inspect(images[-1], request_id="after-barrage")
    metrics = barrage.client.get("/metrics", headers=station.auth("mon")).text
    probe.stopped.set()
    station.stop()
    server_5xx = [
        line
        for line in metrics.splitlines()
        if line.startswith("inspection_http_requests_total") and 'status="5' in line
    ]
    hostile = sum(sum(c.values()) for c in barrage.results.values())
    fives = sum(
        n for c in barrage.results.values() for status, n in c.items() if 500 <= status < 600
    )
    log_text = station.log_path.read_text(errors="replace")
    report = {
        "cpu": cpu_description(),
        "load_1_5_15": {"before": load_before, "after": load_average()},
        "hostile_requests": hostile,
        "classes": {
            cls: {str(k): v for k, v in sorted(c.items())} for cls, c in barrage.results.items()
        },
        "hostile_5xx": fives,
        "unexpected": barrage.unexpected,
        "server_5xx_metric_lines": server_5xx,
        "burst_24_concurrent": {str(k): v for k, v in burst.items()},
        "cross_station": cross,
        "tampering": tampering,
        "healthy_after": health.status_code == 200 and health.json()["status"] == "ok",
        "inspects_after": after.status_code,
        "peak_rss_mb": round(probe.peak / 2**20, 1),
        "blobs": orphan_blobs(station),
        "tracebacks_in_server_log": log_text.count("Traceback"),
        "seconds": round(seconds, 1),
        "load_before": os.getloadavg()[0],
    }
    text = markdown(report)
    save_report(REPORTS, "hostile", report, text)
    print(text)


def markdown(r: dict[str, Any]) -> str:
    lines = [
        "# Hostile-input barrage (bench/hostile.py)",
        "",
        "A real `inspection serve` (uvicorn, SQLite, OpenVINO FP32 bundle signed with the site key, "
        "pinned on the station; workers 2, max_in_flight 8, body timeout 3 s).",
        "",
        f"- hostile requests: **{r['hostile_requests']}**, 5xx among them: **{r['hostile_5xx']}**, "
        f"5xx lines in the server's metrics: {len(r['server_5xx_metric_lines'])}",
        f"- unexpected statuses: {len(r['unexpected'])}"
        + (f" ({'; '.join(r['unexpected'][:5])})" if r["unexpected"] else ""),
        f"- healthy after: {r['healthy_after']}, a valid inspect after: HTTP {r['inspects_after']}",
        f"- peak server RSS: **{r['peak_rss_mb']} MB**",
        f"- blobs: {r['blobs']['blob_files']} files, {r['blobs']['orphans']} orphans, {r['blobs']['missing']} missing",
        f"- cross-station reads: {r['cross_station']['succeeded']}/{r['cross_station']['attempts']} succeeded",
        f"- burst of 24 concurrent valid uploads: {r['burst_24_concurrent']} (503 = load shed with Retry-After, deliberate)",
        f"- tracebacks in the server log: {r['tracebacks_in_server_log']}",
        f"- wall time {r['seconds']} s; CPU {r['cpu']}; load (1/5/15 min) before "
        f"{r['load_1_5_15']['before']}, after {r['load_1_5_15']['after']}",
        "",
        "| class | statuses |",
        "|---|---|",
    ]
    lines += [
        f"| {cls} | {', '.join(f'{k}: {v}' for k, v in c.items())} |"
        for cls, c in r["classes"].items()
    ]
    lines += [
        "",
        "| tampered bundle | CLI refused | hot swap refused | still serving |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {label} | {t['cli_refused']} | {t['hot_swap_refused']} | {t['still_serving']} |"
        for label, t in r["tampering"].items()
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
