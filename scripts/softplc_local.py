"""Run a line station against the soft PLC on this machine (see docs/line-integration.md).

A private Mosquitto and the soft PLC on free loopback ports, ``inspection station run`` on a
copy of ``configs/line.yaml`` pointed at both; fires triggers over OPC UA and MQTT and prints
every answer. Needs ``make demo``'s site and Mosquitto. Exit code 1 when a trigger got no
verdict, 2 when the station exited or never became Ready.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from inspection.line.config import load_line_config
from inspection.line.handshake import ErrorCode
from inspection.line.mosquitto import Broker, free_port
from inspection.line.plc import mqtt_trigger
from inspection.line.softplc import HandshakeTimeout, SoftPlc


def local_config(source: Path, workdir: Path, broker_port: int, endpoint: str) -> Path:
    """``source`` with its triggers and MQTT sinks pointed at the local broker and soft PLC."""
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    core = data.setdefault("core", {})
    beside = source.resolve().parent
    if core.get("trust_file"):
        core["trust_file"] = str(beside / core["trust_file"])
    core["configs_dir"] = str(beside / core.get("configs_dir", "."))
    data["opcua"] = {**data.get("opcua", {}), "enabled": True, "endpoint": endpoint}
    data["mqtt"] = {**data.get("mqtt", {}), "enabled": True, "port": broker_port}
    data["sinks"] = [
        {**sink, "port": broker_port} if sink.get("kind") == "mqtt" else sink
        for sink in data.get("sinks", [])
    ]
    data.pop("metrics_port", None)
    target = workdir / "line.yaml"
    target.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/line.yaml"))
    parser.add_argument("--triggers", type=int, default=5, help="Triggers over each handshake.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="softplc-") as scratch:
        workdir = Path(scratch)
        source = load_line_config(args.config)  # the same link security as the station's
        broker = Broker(workdir, security=source.security, stations=(source.station_id,))
        broker.start()
        endpoint = f"opc.tcp://127.0.0.1:{free_port()}/plc"
        plc = SoftPlc(endpoint, security=source.security)
        plc.start()
        config_path = local_config(args.config, workdir, broker.port, endpoint)
        log_path = workdir / "station.log"
        log = log_path.open("w", encoding="utf-8")
        station = subprocess.Popen(
            [sys.executable, "-m", "inspection", "station", "run", "-c", str(config_path)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        failures = 0
        try:
            if not wait_ready(plc, station, timeout_s=60.0):
                tail = "\n".join(log_path.read_text(encoding="utf-8").splitlines()[-15:])
                state = (
                    f"exited {station.returncode}" if station.poll() is not None else "not Ready"
                )
                print(f"the line station {state} before the first trigger:\n{tail}")
                return 2
            config = load_line_config(config_path)
            for n in range(args.triggers):
                answer = plc.trigger(request_id=f"plc-{n}", part_id=f"part-{n}")
                failures += answer.error_code != ErrorCode.NONE
                print(
                    f"opcua {answer.request_id}: {answer.result.name} "
                    f"score {answer.score:.3f} {answer.seconds * 1e3:.0f} ms {answer.message}"
                )
            for n in range(args.triggers):
                got = mqtt_trigger(config, request_id=f"mqtt-{n}", product="", part_id="",
                                   timeout_s=10.0)  # fmt: skip
                failures += got.error_code != ErrorCode.NONE
                print(
                    f"mqtt  {got.request_id}: {got.verdict or ErrorCode(got.error_code).name} "
                    f"{got.message}"
                )
        finally:
            station.terminate()
            station.wait(30)
            log.close()
            plc.stop()
            broker.kill()
    return 1 if failures else 0


def wait_ready(plc: SoftPlc, station: subprocess.Popen, timeout_s: float) -> bool:
    """True once the station says Ready; False at once when it exits, or after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and station.poll() is None:
        try:
            plc.wait_for("Ready", True, timeout_s=0.5)
            return True
        except HandshakeTimeout:
            continue
    return False


if __name__ == "__main__":
    raise SystemExit(main())
