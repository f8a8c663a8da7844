"""A tampered live bundle on a demo site, put to the three station commands as an operator would.

Copies a site made by ``make demo`` (its ``var/``, the repository's ``configs/`` as shipped,
its datasets linked) into a scratch folder, flips one weight byte of a product's live bundle
and recomputes every checksum (so only the signature can tell), then runs, as subprocesses:

- ``inspection inspect <live bundle> <image>`` (no ``--public-key``: the site key by default);
- ``inspection serve`` (the shipped ``configs/station.yaml``), asked over HTTP;
- ``inspection station run`` (the shipped ``configs/line.yaml``, its PLC and broker pointed at
  a soft PLC and a private Mosquitto), triggered over OPC UA, and ``inspection station status``.

Writes ``reports/security/tampered_bundle.json`` and ``.md``; exit code 1 when any command
served the tampered bundle.

    python bench/tamper.py --site /work/main --product brick
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from _report import load_average, save_report

from inspection.core.bundle import read_bundle_metadata, write_bundle_metadata
from inspection.core.registry import Registry
from inspection.line.config import load_line_config
from inspection.line.mosquitto import Broker, free_port, wait_port
from inspection.line.softplc import SoftPlc

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "reports" / "security"
CLI = [sys.executable, "-m", "inspection"]


def fresh_site(source: Path, work: Path) -> Path:
    """``source``'s ``var/`` and datasets with this checkout's shipped ``configs/``."""
    shutil.copytree(source / "var", work / "var", ignore=shutil.ignore_patterns("*.db*", "blobs"))
    shutil.copytree(REPO / "configs", work / "configs")
    (work / "datasets").symlink_to((source / "datasets").resolve())
    return work


def flip_weights(bundle: Path) -> None:
    """One weight byte flipped, every checksum recomputed: only the signature can tell."""
    weights = bundle / "model.bin"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    write_bundle_metadata(bundle, read_bundle_metadata(bundle))


def run(args: list[str], site: Path, timeout: float = 300.0) -> dict[str, Any]:
    done = subprocess.run(
        [*CLI, *args], cwd=site, capture_output=True, text=True, timeout=timeout, env=_env()
    )
    said = " ".join((done.stdout + done.stderr).split())
    return {"command": "inspection " + " ".join(args), "exit_code": done.returncode, "said": said}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def inspect_cli(site: Path, bundle: Path, image: Path) -> dict[str, Any]:
    outcome = run(["inspect", str(bundle.relative_to(site)), str(image)], site)
    outcome["refused"] = outcome["exit_code"] != 0 and "bad bundle signature" in outcome["said"]
    return outcome


def serve_cli(site: Path, product: str, image: Path) -> dict[str, Any]:
    """``inspection serve`` on the shipped station.yaml, asked for /healthz and one inspection."""
    port = free_port()
    station = run(["tokens", "create", "--station", "cam-1"], site)["said"].split()
    monitor = run(["tokens", "create", "--station", "ops", "--role", "monitor"], site)
    token = next(w for w in station if w.startswith("insp_"))
    monitor_token = next(w for w in monitor["said"].split() if w.startswith("insp_"))
    server = subprocess.Popen(
        [*CLI, "serve", "--port", str(port)], cwd=site, env=_env(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_port(port, timeout_s=120.0)
        base = f"http://127.0.0.1:{port}"
        health = _until_loaded(base, monitor_token, product)
        answer = httpx.post(
            f"{base}/v1/inspect", params={"product": product}, content=image.read_bytes(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "image/png"},
        )  # fmt: skip
    finally:
        server.terminate()
        said = " ".join(server.communicate(timeout=60)[0].split())
    problem = health["products"][product]["problem"] or ""
    return {
        "command": "inspection serve --config configs/station.yaml",
        "banner": said[:300],
        "healthz": {"status": health["status"], "problem": problem,
                    "signatures": health.get("signatures")},
        "inspect_status": answer.status_code,
        "inspect_detail": answer.json().get("detail"),
        "refused": answer.status_code == 503 and "bad bundle signature" in problem,
    }  # fmt: skip


def _until_loaded(base: str, token: str, product: str, timeout_s: float = 120.0) -> dict:
    """/healthz (monitor view) once the product's model loaded or was refused."""
    deadline = time.monotonic() + timeout_s
    while True:
        body = httpx.get(f"{base}/healthz", headers={"Authorization": f"Bearer {token}"}).json()
        state = body["products"][product]
        if state["loaded"] or state["problem"] or time.monotonic() > deadline:
            return body
        time.sleep(0.5)


def station_run_cli(site: Path, product: str) -> dict[str, Any]:
    """``inspection station run`` on the shipped line.yaml, its PLC and broker local."""
    work = site / "line-run"
    work.mkdir()
    config = yaml.safe_load((site / "configs" / "line.yaml").read_text())
    security = load_line_config(site / "configs" / "line.yaml").security  # the station's PKI
    security = dataclasses.replace(security, pki_dir=site / security.pki_dir)
    broker = Broker(work, security=security, stations=(config["station_id"],))
    broker.start()
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/plc"
    plc = SoftPlc(endpoint, security=security)
    plc.start()
    config["opcua"] |= {"enabled": True, "endpoint": endpoint}
    config["mqtt"] |= {"enabled": True, "port": broker.port}
    config["sinks"] = [s | {"port": broker.port} for s in config["sinks"] if s["kind"] == "mqtt"]
    config.pop("metrics_port", None)
    line = site / "configs" / "line-local.yaml"
    line.write_text(yaml.safe_dump(config, sort_keys=False))
    station = subprocess.Popen(
        [*CLI, "station", "run", "-c", str(line.relative_to(site))], cwd=site, env=_env(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        plc.wait_for("Ready", True, timeout_s=120.0)
        answer = plc.trigger(request_id="tamper-1", product=product, part_id="p-1")
    finally:
        station.terminate()
        said = " ".join(station.communicate(timeout=60)[0].split())
        plc.stop()
        broker.kill()
    status = run(["station", "status", "-c", str(line.relative_to(site))], site)
    return {
        "command": "inspection station run --config configs/line.yaml (PLC, broker local)",
        "startup_warning": next((w for w in said.split("WARNING")[1:] if "no live model" in w), "")[
            :300
        ],
        "plc_answer": {"result": answer.result.name, "error_code": answer.error_code.name,
                       "message": answer.message},
        "status": status["said"][-400:],
        "refused": answer.error_code.name == "NO_MODEL" and "bad bundle signature" in answer.message,
    }  # fmt: skip


def markdown(report: dict[str, Any]) -> str:
    inspect, serve, line = report["inspect"], report["serve"], report["station_run"]
    rows = [
        ("`inspection inspect <live bundle> <image>`", inspect["refused"],
         f"exit {inspect['exit_code']}: {inspect['said'][-160:]}"),
        ("`inspection serve` (shipped station.yaml)", serve["refused"],
         f"/v1/inspect {serve['inspect_status']}: {serve['inspect_detail']}"),
        ("`inspection station run` (shipped line.yaml)", line["refused"],
         f"PLC answer {line['plc_answer']['error_code']}: {line['plc_answer']['message']}"),
    ]  # fmt: skip
    lines = [
        "# A tampered live bundle on a demo site",
        "",
        f"Written by `bench/tamper.py` ({report['when']}, load {report['load']}). Site: a copy of "
        f"`{report['site']}` after `make demo` (its `var/`, this checkout's `configs/` as "
        "shipped, no extra configuration). Attack: one byte of the live bundle "
        f"`{report['product']}/{report['bundle']}` flipped in `model.bin`, every checksum in "
        "`metadata.json` recomputed, `signature.json` left as it was.",
        "",
        "| command | refused | what it said |",
        "| --- | --- | --- |",
        *[
            f"| {cmd} | {'yes' if ok else '**NO**'} | {what.replace('|', '/')} |"
            for cmd, ok, what in rows
        ],
        "",
        f"- Before the attack the same `inspection inspect` ran: exit "
        f"{report['genuine_inspect_exit_code']}.",
        f"- `/healthz` (monitor token): `{serve['healthz']['status']}`, signatures "
        f"`{json.dumps(serve['healthz']['signatures'])}`.",
        f"- `inspection station status`: …{line['status'][-200:]}",
        f"- line station start-up warning: {line['startup_warning'].strip()}",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=REPO, help="Folder where make demo ran.")
    parser.add_argument("--product", default="brick")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tamper-") as scratch:
        site = fresh_site(args.site, Path(scratch))
        registry = Registry(site / "var" / "registry")
        live = registry.live(args.product)
        if live is None:
            raise SystemExit(f"{args.product} has no live bundle in {args.site}: run make demo")
        bundle = registry.bundle_dir(args.product, live.bundle_id)
        image = sorted((site / "datasets" / args.product / "test" / "good").glob("*.png"))[0]
        genuine = inspect_cli(site, bundle, image)
        flip_weights(bundle)
        report = {
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load": load_average(),
            "site": str(args.site),
            "product": args.product,
            "bundle": live.bundle_id,
            "genuine_inspect_exit_code": genuine["exit_code"],
            "inspect": inspect_cli(site, bundle, image),
            "serve": serve_cli(site, args.product, image),
            "station_run": station_run_cli(site, args.product),
        }
    save_report(OUT, "tampered_bundle", report, markdown(report))
    refused = all(report[k]["refused"] for k in ("inspect", "serve", "station_run"))
    print(markdown(report))
    return 0 if refused and genuine["exit_code"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
