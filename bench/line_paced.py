"""Paced vs back-to-back latency through the product's line-station path, warm-on-trigger on/off.

    /work/bin/bench python bench/line_paced.py --bundles var/bench/registry/brick/bundles/v0001-int8 ...

Each bundle is served by a real ``LineStation`` (store, pipeline, file camera, no broker) and
driven by calling its ``TriggerHandler`` the way the OPC UA / MQTT handshakes do. The camera
takes ``--exposure-ms`` per capture (exposure + transfer, simulated by a sleep: the cores are
idle meanwhile, as with a real camera). Modes, in rounds:

- ``back-to-back``: the next trigger as soon as the answer is out (warm-on-trigger on; it is
  skipped because the last inference was recent);
- ``paced``: one trigger every ``1 / --hz`` s, warm-on-trigger off (cores idle between parts);
- ``paced-warm``: the same with warm-on-trigger on (the product's default: started at the
  trigger);
- ``paced-warm-learned``: warm-on-trigger timed to end just before the part's inference
  (``timing: learned``).

Figures: the model latency the station stores (``latency_ms``: decode + preprocess +
inference + postprocess + regions, + refine on NG parts where the bundle refines masks) and the
trigger-to-answer time (``handled_ms``). Writes ``<out>/line_paced.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _report import load_average, save_report

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inspection.core.bundle import read_bundle_metadata  # noqa: E402
from inspection.core.registry import Registry  # noqa: E402
from inspection.line.camera import Frame  # noqa: E402
from inspection.line.config import CameraConfig, LineConfig, WarmConfig  # noqa: E402
from inspection.line.handshake import ErrorCode, Trigger  # noqa: E402
from inspection.line.station import LineStation  # noqa: E402
from inspection.runtime.golden import executed_kernels, executed_precision  # noqa: E402
from inspection.runtime.hardware import cpu_info  # noqa: E402
from inspection.station.config import StationCoreConfig  # noqa: E402

STAGE_COLUMNS = ("capture_ms", "decode", "preprocess", "infer", "postprocess", "regions", "refine")
"""Stage times in the report's table; ``refine`` runs on NG parts only, when the bundle refines."""

MODES = {
    "back-to-back": WarmConfig(),
    "paced": WarmConfig(enabled=False),
    "paced-warm": WarmConfig(),
    "paced-warm-learned": WarmConfig(timing="learned"),
}
"""Mode -> the station's warm-on-trigger setting."""


class ExposingCamera:
    """A file camera whose capture takes ``exposure_ms`` (the cores sleep meanwhile)."""

    def __init__(self, camera: Any, exposure_ms: float) -> None:
        self.camera = camera
        self.exposure_s = exposure_ms / 1e3

    def capture(self) -> Frame:
        started = time.perf_counter()
        time.sleep(self.exposure_s)
        frame = self.camera.capture()
        return Frame(frame.data, frame.name, (time.perf_counter() - started) * 1e3)

    def close(self) -> None:
        self.camera.close()


def build_station(work: Path, bundle: Path, images: Path, warm: WarmConfig) -> LineStation:
    meta = read_bundle_metadata(bundle)
    registry = Registry(work / "registry")
    if not registry.bundle_ids(meta.product):
        registry.add_bundle(meta.product, bundle, meta.bundle_id)
        registry.promote(meta.product, meta.bundle_id, actor="bench", reason="line_paced")
    core = StationCoreConfig(
        products=(meta.product,),
        store_url=f"sqlite:///{work / 'line.db'}",
        blob_dir=work / "blobs",
        registry_dir=work / "registry",
        registry_poll_seconds=3600.0,
        allow_unsigned_bundles=True,
        tune_on_load=False,
    )
    config = LineConfig(
        station_id="bench-1",
        camera=CameraConfig(kind="file", path=images, loop=True),
        core=core,
        warm_on_trigger=warm,
    )
    station = LineStation.build(config)
    station.core.models.refresh()
    return station


def run_mode(station: LineStation, mode: str, count: int, hz: float, tag: str) -> dict:
    """``count`` triggers in ``mode``; per trigger the stored latency and the handled time."""
    latency, handled = [], []
    stages: dict[str, list[float]] = {}
    pipeline_run = station.core.pipeline.run

    def run(*args: Any, **kwargs: Any) -> Any:  # keep each part's stage times
        outcome = pipeline_run(*args, **kwargs)
        for name, value in outcome.timings_ms.items():
            stages.setdefault(name, []).append(value)
        return outcome

    station.core.pipeline.run = run  # type: ignore[method-assign]
    period = 1.0 / hz
    next_at = time.perf_counter()
    for n in range(count):
        if mode != "back-to-back":
            next_at += period
            time.sleep(max(0.0, next_at - time.perf_counter()))
        answer = station.handler.handle(Trigger(f"{tag}-{n}"), source="bench")
        if answer.error_code != ErrorCode.NONE:
            raise RuntimeError(f"trigger {tag}-{n}: {answer.message}")
        latency.append(answer.timings_ms["inference_ms"])
        stages.setdefault("capture_ms", []).append(answer.timings_ms["capture_ms"])
        handled.append(answer.timings_ms["handled_ms"])
    station.core.pipeline.run = pipeline_run  # type: ignore[method-assign]
    stage_p50 = {name: round(p50(values), 3) for name, values in stages.items()}
    return {"latency_ms": latency, "handled_ms": handled, "stages_p50_ms": stage_p50}


def bench_bundle(bundle: Path, images: Path, args: argparse.Namespace) -> dict[str, Any]:
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    extra: dict[str, Any] = {}
    for round_no in range(args.rounds):
        for mode in MODES:
            with tempfile.TemporaryDirectory(prefix="line-paced-") as tmp:
                station = build_station(Path(tmp), bundle, images, MODES[mode])
                station.handler.camera = ExposingCamera(station.handler.camera, args.exposure_ms)
                try:
                    run_mode(station, "back-to-back", 8, args.hz, f"w{round_no}")  # warm-up
                    load = load_average()
                    result = run_mode(station, mode, args.triggers, args.hz, f"r{round_no}")
                    model = station.core.models.get(read_bundle_metadata(bundle).product)
                    compiled = model.inspector.model.compiled
                    extra = {
                        "executed_precision": executed_precision(compiled),
                        "kernels": list(executed_kernels(compiled)),
                        "golden": station.core.models.status()[model.product]["golden"],
                    }
                    stats = model.inspector.model.warm_stats
                    result |= {"load": load, "warm": vars(stats).copy()}
                finally:
                    station.stop()
            runs[mode].append(result)
    return {"bundle": str(bundle), "precision": read_bundle_metadata(bundle).precision,
            **extra, "runs": runs}  # fmt: skip


def p50(values: list[float]) -> float:
    return float(np.percentile(values, 50))


def summarise(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for mode, runs in row["runs"].items():
        p50s = [p50(r["latency_ms"]) for r in runs]
        handled = [p50(r["handled_ms"]) for r in runs]
        names = sorted({name for r in runs for name in r["stages_p50_ms"]})
        out[mode] = {
            "latency_p50_ms": round(float(np.median(p50s)), 3),
            "latency_p50_range": [round(min(p50s), 3), round(max(p50s), 3)],
            "handled_p50_ms": round(float(np.median(handled)), 3),
            "stages_p50_ms": {
                n: round(float(np.median([r["stages_p50_ms"].get(n, np.nan) for r in runs])), 3)
                for n in names
            },
            "loads": [r["load"] for r in runs],
            "warm": [r["warm"] for r in runs],
        }
    base = out["back-to-back"]["latency_p50_ms"]
    for mode in list(MODES)[1:]:
        out[mode]["ratio"] = round(out[mode]["latency_p50_ms"] / base, 3)
    return out


def _cell(m: dict[str, Any]) -> str:
    lo, hi = m["latency_p50_range"]
    ratio = f" ({m['ratio']:.2f}x)" if "ratio" in m else ""
    return f"{m['latency_p50_ms']:.2f} [{lo:.2f}–{hi:.2f}]{ratio}"


def markdown(report: dict[str, Any]) -> str:
    modes = list(MODES)
    lines = [
        "# Paced vs back-to-back through the line station (warm-on-trigger)",
        "",
        f"- CPU: **{report['cpu']}**",
        f"- {report['triggers']} triggers per mode and round, {report['rounds']} rounds "
        f"(modes interleaved); paced at {report['hz']:g} parts/s; camera exposure + transfer "
        f"{report['exposure_ms']:g} ms (sleep); load (1/5/15 min) at start {report['load_start']}, "
        f"end {report['load_end']}",
        "- Latency = the stored model latency (decode + preprocess + inference + "
        "postprocess + regions, + refine on NG parts when the bundle refines masks), p50 per run: the median run [range of runs] (x back-to-back). "
        "Modes: " + "; ".join(f"`{m}`" for m in modes) + " (see the script's docstring).",
        "",
        "| bundle | executed | " + " | ".join(f"{m} p50 ms" for m in modes) + " |",
        "|---|---|" + "---|" * len(modes),
    ]
    for row in report["bundles"]:
        s = row["summary"]
        kernels = [k for k in row.get("kernels", []) if "gemm" in k or "conv" in k]
        executed = f"{row.get('executed_precision', '?')} ({', '.join(kernels[:2]) or '-'})"
        cells = " | ".join(_cell(s[m]) for m in modes)
        lines.append(f"| {row['precision']} | {executed} | {cells} |")
    lines += [
        "",
        "Stage p50 (ms, median run) and warm runs (finished before the part / cancelled by it):",
        "",
        "| bundle | mode | capture | decode | preprocess | infer | postprocess | regions | "
        "refine (NG) | handled | warm finished / cancelled |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["bundles"]:
        for mode in modes:
            m = row["summary"][mode]
            st = m["stages_p50_ms"]
            fin = sum(w["finished"] for w in m["warm"])
            can = sum(w["cancelled"] for w in m["warm"])
            cells = " | ".join(f"{st[k]:.2f}" if k in st else "-" for k in STAGE_COLUMNS)
            lines.append(
                f"| {row['precision']} | {mode} | {cells} | {m['handled_p50_ms']:.1f} | "
                f"{fin} / {can} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", nargs="+", required=True)
    parser.add_argument("--images", required=True, help="Camera folder (e.g. a test split).")
    parser.add_argument("--triggers", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hz", type=float, default=10.0)
    parser.add_argument("--exposure-ms", type=float, default=5.0)
    parser.add_argument("--out", default=str(ROOT / "reports" / "runtime"))
    parser.add_argument("--stem", default="line_paced", help="Report file name (no suffix).")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "cpu": cpu_info().summary(), "python": platform.python_version(),
        "triggers": args.triggers, "rounds": args.rounds, "hz": args.hz,
        "exposure_ms": args.exposure_ms, "load_start": load_average(), "bundles": [],
    }  # fmt: skip
    for bundle in args.bundles:
        row = bench_bundle(Path(bundle), Path(args.images), args)
        row["summary"] = summarise(row)
        report["bundles"].append(row)
        print(row["precision"], row["summary"], flush=True)
    report["load_end"] = load_average()
    text = markdown(report)
    save_report(Path(args.out), args.stem, report, text)
    print(text)


if __name__ == "__main__":
    main()
