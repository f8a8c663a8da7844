"""Camera resolution without stalls: 2-25 MP images through `inspection inspect` and the HTTP
service, alone and 3 at a time, plus 20 slow clients against a normal station.

Images are the live bundle's own held-out brick test parts (NG: defective parts the bundle
judges NG at their native 256 px; good: good parts), upscaled (bicubic) to 2, 5, 12 and
25 MP and written as PNG and JPEG (quality 92). Per cell (size x part x format) every image
runs ``--rounds`` times:

- **cli**: one `python -m inspection inspect --format json` process per cell (model load
  excluded; each row's latency includes the file's decode); peak RSS of that process;
- **http**: a real `inspection serve` (uvicorn), one request at a time, then 3 concurrent
  requests; end to end is the client's wall time (upload, decode, inference, refine, store,
  answer); stages come from the answer's ``timings_ms``; peak RSS is the server's VmHWM;
- **slow**: 20 authenticated clients trickle their uploads (a 2 MP JPEG over 15 s) and
  reconnect when closed, while a normal station sends 5 MP JPEG parts one after another;
- **masks**: ``bench/camera_masks.py`` (bounded masks vs full-resolution refinement).

    /work/bin/bench python bench/camera.py          # writes reports/camera/{camera,masks}.{json,md}
"""

from __future__ import annotations

import argparse
import asyncio
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
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import yaml
from _report import load_average, save_report
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from camera_masks import run as run_masks  # noqa: E402

from inspection.core.images import read_image  # noqa: E402
from inspection.core.registry import Registry  # noqa: E402
from inspection.runtime.inspector import Inspector  # noqa: E402
from inspection.store.store import Store  # noqa: E402
from inspection.store.tokens import create_token  # noqa: E402

REPORTS = REPO / "reports" / "camera"
SIDES = {2: 1414, 5: 2236, 12: 3464, 25: 5000}
FORMATS = {"png": "PNG", "jpg": "JPEG"}
STAGES = ("decode", "preprocess", "infer", "regions", "postprocess", "refine", "encode", "store")
BUDGET_MS = 800.0
"""The products' latency budget in the runs (refinement is skipped past it; the store and the
answer come after)."""


# ------------------------------------------------------------------------- images
def pick_parts(bundle: Path, dataset: Path, count: int) -> dict[str, list[Path]]:
    """``count`` NG parts (defective, judged NG at native size) and ``count`` good parts."""
    inspector = Inspector.from_bundle(bundle)
    defects = sorted(p for p in (dataset / "test").rglob("*.png") if p.parent.name != "good")
    ng = [p for p in defects if inspector.inspect(read_image(p)).verdict == "NG"]
    by_type: dict[str, list[Path]] = {}
    for path in ng:
        by_type.setdefault(path.parent.name, []).append(path)
    spread = [p for group in zip(*by_type.values(), strict=False) for p in group] + ng
    good = sorted((dataset / "test" / "good").glob("*.png"))
    return {"ng": list(dict.fromkeys(spread))[:count], "good": good[:count]}


def write_images(parts: dict[str, list[Path]], root: Path) -> dict[tuple[int, str, str], Path]:
    """Folders ``root/<mp>mp/<kind>/<fmt>/`` of upscaled parts, per (mp, kind, fmt)."""
    folders = {}
    for mp, side in SIDES.items():
        for kind, paths in parts.items():
            for ext, fmt in FORMATS.items():
                folder = root / f"{mp}mp" / kind / ext
                folders[(mp, kind, ext)] = folder
                if folder.is_dir() and len(list(folder.iterdir())) == len(paths):
                    continue
                folder.mkdir(parents=True, exist_ok=True)
                for i, path in enumerate(paths):
                    big = cv2.resize(read_image(path), (side, side), interpolation=cv2.INTER_CUBIC)
                    options = {"quality": 92} if fmt == "JPEG" else {}
                    Image.fromarray(big).save(folder / f"{i:02d}.{ext}", format=fmt, **options)
    return folders


# ---------------------------------------------------------------------------- cli
def run_cli(bundle: Path, folder: Path, rounds: int, out: Path) -> dict[str, Any]:
    """One `inspection inspect` process over ``folder`` ``rounds`` times."""
    out.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "inspection",
        "inspect",
        str(bundle),
        *[str(folder)] * rounds,
        "--format",
        "json",
        "--out",
        str(out),
        "--latency-budget-ms",
        str(BUDGET_MS),
    ]
    env = os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise RuntimeError(f"inspection inspect failed ({status}) on {folder}")
    rows = json.loads((out / "results.json").read_text(encoding="utf-8"))
    samples = [
        {"e2e_ms": row["latency_ms"], "verdict": row["verdict"], **row["timings_ms"]}
        for row in rows
    ]
    return summarise(samples) | {"peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


# --------------------------------------------------------------------------- http
class Server:
    """A scratch station serving the live bundle: ``inspection serve`` in a subprocess."""

    def __init__(self, root: Path, registry: Path, product: str) -> None:
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        self.root, self.product = root, product
        source = Registry(registry).live_bundle_dir(product)
        target = Registry(root / "registry")
        target.add_bundle(product, source, source.name)
        target.promote(product, source.name, actor="bench", reason="camera bench")
        self.port = _free_port()
        store_url = f"sqlite:///{root / 'inspection.db'}"
        config = {
            "core": {
                "products": [product],
                "store_url": store_url,
                "blob_dir": str(root / "blobs"),
                "registry_dir": str(root / "registry"),
                "max_pixels": 26_000_000,
                "allow_unsigned_bundles": True,
                "tune_on_load": False,
                "bounds": {"latency_budget_ms": BUDGET_MS},
            },
            "port": self.port,
            "max_upload_bytes": 60_000_000,
            "workers": 2,
        }
        self.config = root / "station.yaml"
        self.config.write_text(yaml.safe_dump(config), encoding="utf-8")
        store = Store.migrated(store_url, root / "blobs")
        self.token, _ = create_token(store, "line-1", "camera bench")
        self.slow_token, _ = create_token(store, "slow-1", "camera bench")
        self.monitor, _ = create_token(store, "prometheus", "camera bench", role="monitor")
        store.engine.dispose()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.root / "server.log", "wb")  # noqa: SIM115 - kept by Popen
        env = os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}
        command = [sys.executable, "-m", "inspection", "serve", "--config", str(self.config)]
        self.process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=log, env=env)
        for _ in range(600):
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited; see {log.name}")
            time.sleep(0.2)
        raise RuntimeError("server not healthy after 120 s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)

    def memory_mb(self) -> dict[str, float]:
        """The server's current (VmRSS) and peak (VmHWM) resident memory in MB."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()  # type: ignore[union-attr]
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return {
            name: round(int(fields[key].split()[0]) / 1024, 1)
            for name, key in (("rss_mb", "VmRSS"), ("peak_rss_mb", "VmHWM"))
        }

    def metrics(self) -> str:
        headers = {"Authorization": f"Bearer {self.monitor}"}
        return httpx.get(f"{self.url}/metrics", headers=headers, timeout=10).text

    def post(self, client: httpx.Client, data: bytes, ext: str) -> dict[str, Any]:
        """One inspection; its wall time, status and server-side stage times."""
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Content-Type": "image/png" if ext == "png" else "image/jpeg",
        }
        begin = time.perf_counter()
        response = client.post(
            f"{self.url}/v1/inspect",
            params={"product": self.product},
            content=data,
            headers=headers,
        )
        sample: dict[str, Any] = {
            "e2e_ms": (time.perf_counter() - begin) * 1e3,
            "status": response.status_code,
        }
        if response.status_code in (200, 201):
            body = response.json()
            sample |= {"verdict": body["verdict"], "regions": len(body["regions"])}
            sample |= body.get("timings_ms", {})
        return sample


def run_http(server: Server, folder: Path, ext: str, rounds: int, clients: int) -> dict:
    """Every image of ``folder`` ``rounds`` times, ``clients`` requests at once."""
    files = sorted(folder.iterdir())
    payloads = [f.read_bytes() for f in files]
    samples: list[dict[str, Any]] = []
    with httpx.Client(timeout=120.0) as client:
        server.post(client, payloads[0], ext)  # warm the path for this size
        for _ in range(rounds):
            for start in range(0, len(payloads), clients):
                batch = payloads[start : start + clients]
                results = _concurrently(server, batch, ext)
                samples.extend(results)
    return summarise(samples) | server.memory_mb()


def _concurrently(server: Server, payloads: list[bytes], ext: str) -> list[dict[str, Any]]:
    """All ``payloads`` posted at once, one connection each."""
    results: list[dict[str, Any]] = [{} for _ in payloads]

    def send(i: int, data: bytes) -> None:
        with httpx.Client(timeout=120.0) as own:
            results[i] = server.post(own, data, ext)

    threads = [threading.Thread(target=send, args=(i, d)) for i, d in enumerate(payloads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


# --------------------------------------------------------------------------- slow
async def _slow_client(server: Server, data: bytes, seconds: float, until: float) -> list[str]:
    """Trickle ``data`` over ``seconds`` again and again until ``until``; outcomes."""
    outcomes = []
    while time.monotonic() < until:
        outcomes.append(await _trickle_once(server, data, seconds))
    return outcomes


async def _trickle_once(server: Server, data: bytes, seconds: float) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    head = (
        f"POST /v1/inspect?product={server.product} HTTP/1.1\r\nHost: bench\r\n"
        f"Authorization: Bearer {server.slow_token}\r\nContent-Type: image/jpeg\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    pieces = 15
    step = -(-len(data) // pieces)
    try:
        writer.write(head.encode())
        for start in range(0, len(data), step):
            writer.write(data[start : start + step])
            await writer.drain()
            if reader.at_eof() or reader._buffer:  # type: ignore[attr-defined]
                break  # the server answered (and closes) before the body was complete
            await asyncio.sleep(seconds / pieces)
        line = await asyncio.wait_for(reader.readline(), timeout=30)
        status = line.split()[1].decode() if line.startswith(b"HTTP/") else "closed"
    except (ConnectionError, asyncio.TimeoutError):
        status = "closed"
    finally:
        writer.close()
    return status


def run_slow(
    server: Server, slow_image: bytes, station_images: list[bytes], seconds: float
) -> dict:
    """20 slow clients for ``seconds`` while a normal station inspects one part after another."""
    until = time.monotonic() + seconds
    station: list[dict[str, Any]] = []

    def normal_station() -> None:
        time.sleep(1.0)  # the slow clients are connected first
        with httpx.Client(timeout=120.0) as client:
            i = 0
            while time.monotonic() < until:
                station.append(server.post(client, station_images[i % len(station_images)], "jpg"))
                i += 1

    thread = threading.Thread(target=normal_station)
    thread.start()

    async def slow_clients() -> list[list[str]]:
        tasks = [_slow_client(server, slow_image, 15.0, until) for _ in range(20)]
        return await asyncio.gather(*tasks)

    slow = [status for outcomes in asyncio.run(slow_clients()) for status in outcomes]
    thread.join()
    statuses = [s["status"] for s in station]
    closed = {
        line.split("{", 1)[1].split("}")[0]: float(line.rsplit(" ", 1)[1])
        for line in server.metrics().splitlines()
        if line.startswith("inspection_uploads_closed_total{")
    }
    return {
        "seconds": seconds,
        "slow_clients": 20,
        "slow_outcomes": {s: slow.count(s) for s in sorted(set(slow))},
        "station_requests": len(station),
        "station_statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        "station_refusals": sum(1 for s in statuses if s not in (200, 201)),
        "station_e2e_ms": _percentiles([s["e2e_ms"] for s in station]),
        "uploads_closed": closed,
        **server.memory_mb(),
    }


# ------------------------------------------------------------------------ summary
def summarise(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """p50/p95 of end to end and of every stage, verdicts, statuses, refinement skipped."""
    stages = {
        stage: _percentiles([s[stage] for s in samples if stage in s])
        for stage in ("e2e_ms", *STAGES)
    }
    verdicts = [s.get("verdict") for s in samples]
    statuses = [s["status"] for s in samples if "status" in s]
    return {
        "n": len(samples),
        "ms": {k: v for k, v in stages.items() if v},
        "verdicts": {str(v): verdicts.count(v) for v in sorted(set(map(str, verdicts)))},
        "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        "refine_skipped": sum(1 for s in samples if s.get("refine_skipped")),
        "refined": sum(1 for s in samples if "refine" in s),
    }


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    array = np.asarray(values, dtype=np.float64)
    return {
        "p50": round(float(np.percentile(array, 50)), 1),
        "p95": round(float(np.percentile(array, 95)), 1),
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


# ------------------------------------------------------------------------- report
def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        "# Camera resolution: bounded stages, admission",
        "",
        f"`bench/camera.py`, {report['finished']}: {env['cpu']} ({env['cpus']} cores, "
        f"AVX-512/VNNI/AMX), load average {env['load_start']} at start and {env['load_end']} "
        f"at end; bundle `{report['bundle']}`; latency budget {BUDGET_MS:g} ms; working copy "
        "1024 px; GrabCut crops <= 65 536 px. Images: held-out brick test parts upscaled "
        "(bicubic) to each size. End to end = `inspection inspect` row latency (decode of the "
        "file + inspection) or the HTTP client's wall time (upload, decode, inference, refine, "
        "overlay, store, answer). Decode is included everywhere; PNG and JPEG are reported "
        "separately.",
        "",
    ]
    for path in ("cli", "http", "http_x3"):
        rows = [r for r in report["runs"] if r["path"] == path]
        if not rows:
            continue
        title = {
            "cli": "`inspection inspect`",
            "http": "HTTP, one request at a time",
            "http_x3": "HTTP, 3 concurrent requests",
        }[path]
        lines += [
            f"## {title}",
            "",
            "| MP | part | format | n | e2e p50 / p95 ms | decode p50 / p95 | infer p50 | "
            "refine p50 / p95 (skipped) | store p50 | verdicts | statuses | peak RSS MB |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            ms = r["ms"]

            def pair(stage: str, ms: dict = ms) -> str:
                v = ms.get(stage)
                return f"{v['p50']:.0f} / {v['p95']:.0f}" if v else "-"

            def one(stage: str, ms: dict = ms) -> str:
                v = ms.get(stage)
                return f"{v['p50']:.0f}" if v else "-"

            lines.append(
                f"| {r['mp']} | {r['part']} | {r['format']} | {r['n']} | {pair('e2e_ms')} | "
                f"{pair('decode')} | {one('infer')} | {pair('refine')} ({r['refine_skipped']}) | "
                f"{one('store')} | {r['verdicts']} | {r['statuses']} | {r.get('peak_rss_mb')} |"
            )
        lines.append("")
    slow = report.get("slow")
    if slow:
        lines += [
            "## 20 slow clients vs a normal station",
            "",
            f"{slow['slow_clients']} authenticated clients trickled a 2 MP JPEG over 15 s and "
            f"reconnected when closed, for {slow['seconds']:g} s; meanwhile the station sent "
            f"{slow['station_requests']} 5 MP JPEG parts one after another.",
            "",
            f"- station statuses: {slow['station_statuses']}; refusals: "
            f"**{slow['station_refusals']}**; e2e {slow['station_e2e_ms']}",
            f"- slow clients' outcomes: {slow['slow_outcomes']}; closed by the server: "
            f"{slow['uploads_closed']}",
            f"- server peak RSS over the whole run: {slow['peak_rss_mb']} MB",
            "",
        ]
    lines += ["## Verdicts on the must-show items", "", *report["verdict_lines"], ""]
    return "\n".join(lines)


def verdict_lines(report: dict[str, Any]) -> list[str]:
    """One line per must-show item, met or not, from the figures."""
    lines = []
    for path in ("cli", "http"):
        for mp, limit in ((25, 1000.0), (5, 500.0)):
            for fmt in FORMATS:
                rows = [
                    r
                    for r in report["runs"]
                    if (r["path"], r["mp"], r["part"], r["format"]) == (path, mp, "ng", fmt)
                ]
                if rows:
                    p95 = rows[0]["ms"]["e2e_ms"]["p95"]
                    ok = "met" if p95 <= limit else "NOT met"
                    lines.append(
                        f"- {mp} MP NG {fmt.upper()} via {path}: e2e p95 {p95:.0f} ms vs "
                        f"<= {limit:.0f} ms: **{ok}** (refine skipped "
                        f"{rows[0]['refine_skipped']}/{rows[0]['n']})"
                    )
    peak = max((r.get("peak_rss_mb") or 0) for r in report["runs"] if r["path"].startswith("http"))
    lines.append(
        f"- server peak RSS (3 concurrent 25 MP included): {peak} MB vs <= 1024 MB: "
        f"**{'met' if peak <= 1024 else 'NOT met'}**"
    )
    statuses = [
        int(s) for r in report["runs"] if r["path"].startswith("http") for s in r["statuses"]
    ]
    slow = report.get("slow") or {}
    statuses += [int(s) for s in slow.get("station_statuses", {})]
    statuses += [int(s) for s in slow.get("slow_outcomes", {}) if s.isdigit()]
    five = sorted({s for s in statuses if s >= 500})
    lines.append(
        f"- 5xx anywhere in the barrage: {five or 'none'}: **{'met' if not five else 'NOT met'}**"
    )
    if slow:
        lines.append(
            f"- station refusals under 20 slow clients: {slow['station_refusals']}: "
            f"**{'met' if slow['station_refusals'] == 0 else 'NOT met'}**"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--registry", type=Path, default=REPO / "var" / "registry")
    parser.add_argument("--datasets", type=Path, default=REPO / "datasets")
    parser.add_argument("--product", default="brick")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/camera-bench"))
    parser.add_argument("--images", type=int, default=6, help="parts per kind")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--parts", default="cli,http,slow,masks")
    parser.add_argument("--slow-seconds", type=float, default=25.0)
    parser.add_argument("--mask-side", type=int, default=2048)
    parser.add_argument("--mask-images", type=int, default=24)
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    bundle = Registry(args.registry).live_bundle_dir(args.product)
    report: dict[str, Any] = {
        "bundle": f"{args.product}/{bundle.name}",
        "environment": {
            "cpu": cpu_model(),
            "cpus": os.cpu_count(),
            "load_start": load_average(),
            "python": platform.python_version(),
        },
        "runs": [],
    }
    chosen = pick_parts(bundle, args.datasets / args.product, args.images)
    report["parts"] = {k: [str(p.relative_to(args.datasets)) for p in v] for k, v in chosen.items()}
    folders = write_images(chosen, args.workdir / "images")
    cells = sorted(folders)
    if "cli" in parts:
        for mp, kind, ext in cells:
            stats = run_cli(bundle, folders[(mp, kind, ext)], args.rounds, args.workdir / "cli")
            report["runs"].append({"path": "cli", "mp": mp, "part": kind, "format": ext, **stats})
            print("cli", mp, kind, ext, stats["ms"].get("e2e_ms"), flush=True)
    if "http" in parts or "slow" in parts:
        server = Server(args.workdir / "station", args.registry, args.product)
        server.start()
        report["server_start"] = server.memory_mb()
        try:
            if "http" in parts:
                for clients, name in ((1, "http"), (3, "http_x3")):
                    for mp, kind, ext in cells:
                        folder = folders[(mp, kind, ext)]
                        stats = run_http(server, folder, ext, args.rounds, clients)
                        row = {"path": name, "mp": mp, "part": kind, "format": ext, **stats}
                        report["runs"].append(row)
                        print(name, mp, kind, ext, stats["ms"].get("e2e_ms"), flush=True)
            if "slow" in parts:
                slow_image = (folders[(2, "good", "jpg")] / "00.jpg").read_bytes()
                station = [f.read_bytes() for f in sorted(folders[(5, "ng", "jpg")].iterdir())]
                report["slow"] = run_slow(server, slow_image, station, args.slow_seconds)
                print("slow", report["slow"], flush=True)
        finally:
            server.stop()
    if "masks" in parts:
        products = {
            name: (Registry(args.registry).live_bundle_dir(name), args.datasets / name)
            for name in ("brick", "grass", "gravel")
            if (args.datasets / name).is_dir()
        }
        report["masks"] = run_masks(products, args.mask_side, args.mask_images)
    report["environment"]["load_end"] = load_average()
    report["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    report["verdict_lines"] = verdict_lines(report) if report["runs"] else []
    text = markdown(report)
    if report.get("masks"):
        text += masks_markdown(report["masks"])
    save_report(REPORTS, "camera", report, text)
    print(text)


def masks_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "## Masks: bounded path vs today's full-resolution refinement",
        "",
        "Held-out defective test images upscaled (bicubic) to the side below; pooled pixel F1 "
        "against the ground truth upscaled the same way. *full*: judged and refined at full "
        "resolution (unbounded crops), the station before this change except that the guard "
        "neighbourhood is now a distance transform instead of a disc dilation (same pixels up "
        "to rounding on the disc's edge); *bounded*: 1024 px working copy, crops <= 65 536 px, "
        "mask brought back to full resolution (nearest). Agreement: F1 of the bounded mask "
        "against the full one. Rows marked *eval* force GrabCut on products whose bundle "
        "refines nothing: an evaluation family the bounded defaults were not chosen on.",
        "",
        "| product | refiner | images | side | F1 full | F1 bounded | delta | agreement | "
        "ms full p50 | ms bounded p50 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        tag = " (eval)" if r.get("evaluation_family") else ""
        lines.append(
            f"| {r['product']} | {r['refiner']}{tag} | {r['images']} | {r['side']} | "
            f"{r['pixel_f1_full']:.3f} | {r['pixel_f1_bounded']:.3f} | {r['f1_delta']:+.3f} | "
            f"{r['agreement_f1']:.3f} | {r['ms_full_p50']:.0f} | {r['ms_bounded_p50']:.0f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
