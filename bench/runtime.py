"""Runtime benchmark on the hardware it runs on: OpenVINO FP32/FP16/BF16/INT8 bundles.

    python bench/runtime.py [--product brick] [--kinds patchcore stfpm]

For each model kind: train on the demo data into a bench registry (reused on later runs),
export every precision (forced), then measure each engine in its own subprocess on the held-out
test images: p50/p95 at batch 1 (decoded image in, result out) per stage, latency when parts
arrive every 100 ms (paced: sleeping, or warmed on the trigger as the line station does), best
throughput (sequential, batch 8, async queue), peak RSS and image/pixel AUROC. Engines run
``--repeat`` times in rounds; a row is the median run. Also recorded: the CPU and its ISA,
OpenVINO's capabilities and compiled settings, the load, and the model's floor at this CPU's
measured matmul peaks (``_peaks``). Writes ``reports/runtime/runtime.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _peaks import limit_ms, precision_peaks  # noqa: E402
from _report import previous_report, rounds, save_report, seconds, table  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")

log = logging.getLogger("bench.runtime")
ENGINES = ("fp32", "fp16", "bf16", "int8")
THROUGHPUT_IMAGES = 64
LATENCY_SAMPLES = 64
BATCH = 8
ASYNC_JOBS = (0, 4)
"""Requests in flight in the async mode: 0 = OpenVINO's optimal number (one per stream)."""
PACED_HZ = 10.0
PACED_SAMPLES = 40
PACED_MODES = ("sleep", "warm-on-trigger")
TRIGGER_LEAD_MS = 5.0
"""How long before the image the trigger comes (the camera exposes and transfers)."""
LATENCY_TARGET_MS = 8.0
THROUGHPUT_TARGET_IPS = 150.0
ACCURACY_KEYS = ("image_auroc", "pixel_auroc")  # deterministic outputs: scored once
OV_PROPERTIES = (
    "PERFORMANCE_HINT",
    "INFERENCE_NUM_THREADS",
    "NUM_STREAMS",
    "OPTIMAL_NUMBER_OF_INFER_REQUESTS",
    "INFERENCE_PRECISION_HINT",
    "ENABLE_CPU_PINNING",
)


# ========================================================================= workers
def _peak_rss_mb() -> float:
    """Peak RSS of this process since exec (VmHWM; ru_maxrss would count the parent's memory
    at fork time)."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024.0


def _percentiles(samples: list[float]) -> dict[str, float]:
    return {
        "p50": float(np.percentile(samples, 50)),
        "p95": float(np.percentile(samples, 95)),
        "mean": float(np.mean(samples)),
    }


def _ov_properties(compiled: Any) -> dict[str, str]:
    out = {}
    for name in OV_PROPERTIES:
        try:
            out[name] = str(compiled.get_property(name))
        except RuntimeError:
            out[name] = "-"
    return out


def worker_openvino(bundle: Path, paths: list[str], images: list[np.ndarray]) -> dict[str, Any]:
    """Station side: only numpy/OpenCV/OpenVINO are imported here."""
    from inspection.core.images import read_image
    from inspection.runtime.golden import executed_kernels, executed_precision
    from inspection.runtime.inspector import Inspector

    start = time.perf_counter()
    inspector = Inspector.from_bundle(bundle)
    load_s = time.perf_counter() - start
    outputs = [inspector.inspect(image) for image in images]  # also the warm-up
    latencies: list[float] = []
    stages: dict[str, list[float]] = {"decode": []}
    while len(latencies) < LATENCY_SAMPLES:
        for path, image in zip(paths, images, strict=True):
            t = time.perf_counter()
            read_image(path)
            stages["decode"].append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            result = inspector.inspect(image)
            latencies.append((time.perf_counter() - t) * 1e3)
            for name, value in result.timings_ms.items():
                stages.setdefault(name, []).append(value)
    rss_serving = _peak_rss_mb()
    paced_modes = {m: _percentiles(_paced_latencies(inspector, images, m)) for m in PACED_MODES}
    stream = (images * (THROUGHPUT_IMAGES // len(images) + 1))[:THROUGHPUT_IMAGES]
    batches = [stream[k : k + BATCH] for k in range(0, len(stream), BATCH)]
    throughput = {  # images per second
        "sequential": len(stream) / seconds(lambda: [inspector.inspect(i) for i in stream]),
        f"batch{BATCH}": len(stream)
        / seconds(lambda: [inspector.inspect_batch(b) for b in batches]),
    }
    fast = Inspector.from_bundle(bundle, performance_hint="THROUGHPUT")
    for jobs in ASYNC_JOBS:  # requests in flight on the THROUGHPUT compile's streams
        fast.inspect_many(stream[:8], jobs=jobs)
        mode = "async" if jobs == 0 else f"async{jobs}"
        throughput[mode] = len(stream) / seconds(lambda j=jobs: fast.inspect_many(stream, jobs=j))
    return {
        "load_s": load_s,
        "latency_ms": _percentiles(latencies),
        "paced_modes_ms": paced_modes,
        "executed_precision": executed_precision(inspector.model.compiled),
        "kernels": list(executed_kernels(inspector.model.compiled)),
        "golden": inspector.golden.summary() if inspector.golden else None,
        "stages_ms_p50": {k: round(float(np.median(v)), 3) for k, v in stages.items()},
        "throughput_ips": throughput,
        "openvino_latency": _ov_properties(inspector.model.compiled),
        "openvino_throughput": _ov_properties(fast.model.compiled),
        "peak_rss_mb_serving": rss_serving,
        "peak_rss_mb": _peak_rss_mb(),
        "torch_imported": "torch" in sys.modules,
        "scores": [r.score for r in outputs],
        "maps": np.stack([r.anomaly_map for r in outputs]),
    }


def _paced_latencies(inspector: Any, images: list[np.ndarray], mode: str) -> list[float]:
    """Batch-1 latency when images arrive at ``PACED_HZ``: between parts the cores idle. In
    ``warm-on-trigger`` the trigger, ``TRIGGER_LEAD_MS`` before the image, starts the line
    station's warm run (``Inspector.warm``)."""
    from inspection.line.config import WarmConfig

    idle_ms = WarmConfig().idle_ms
    latencies: list[float] = []
    period = 1.0 / PACED_HZ
    next_arrival = time.perf_counter()
    while len(latencies) < PACED_SAMPLES:
        for image in images[: PACED_SAMPLES - len(latencies)]:
            next_arrival += period
            if mode == "warm-on-trigger":
                time.sleep(max(0.0, next_arrival - TRIGGER_LEAD_MS / 1e3 - time.perf_counter()))
                inspector.warm(idle_ms)
            time.sleep(max(0.0, next_arrival - time.perf_counter()))
            t = time.perf_counter()
            inspector.inspect(image)
            latencies.append((time.perf_counter() - t) * 1e3)
    return latencies


def run_worker(args: argparse.Namespace) -> None:
    from inspection.core.images import read_image

    paths = json.loads(Path(args.images).read_text())
    images = [read_image(p) for p in paths]
    load_before = os.getloadavg()[0]
    result = worker_openvino(Path(args.model), paths, images)
    result["loadavg_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    np.save(Path(args.out).with_suffix(".npy"), result.pop("maps").astype(np.float32))
    Path(args.out).write_text(json.dumps(result, indent=2))


# ========================================================================== parent
def ensure_dataset(product: str, datasets: Path) -> Path:
    from inspection.data.demo import write_demo

    folder = datasets / product
    if not (folder / "train").is_dir():
        log.info("writing demo product %s to %s", product, datasets)
        write_demo(datasets, [product])
    return folder


def ensure_version(registry: Any, product: str, kind: str, dataset_dir: Path) -> Any:
    from inspection.core.product_config import load_model_config
    from inspection.data.dataset import load_dataset
    from inspection.training.train import train

    for record in reversed(registry.bundles.versions(product)):
        if record.model_kind == kind:
            log.info("reusing %s (%s)", record.model_version, kind)
            return record
    log.info("training %s on %s", kind, dataset_dir)
    config = load_model_config(kind, product=product)
    return train(config, load_dataset(dataset_dir), product=product, registry=registry)


def export_forced(
    registry: Any,
    product: str,
    version: str,
    precision: str,
    dataset: Path | None = None,
    reference: Any = None,
) -> Any:
    """Export ``precision`` with ``force``: a bundle the gate refuses is measured too (the
    report gives the gate's verdict); ``reference``: the FP32 figures it is gated against."""
    from inspection.training.export import ExportOptions
    from inspection.training.registry_export import RegistryExport, export_bundle

    options = ExportOptions(precision=precision, force=True)
    return export_bundle(
        registry, product, options, RegistryExport(version, dataset), reference=reference
    )


def ensure_bundles(registry: Any, record: Any, dataset_dir: Path) -> dict[str, Path]:
    from inspection.runtime.hardware import cpu_info

    bundles = {}
    for precision in ("fp32", "fp16", "bf16", "int8"):
        if cpu_info().unavailable(precision):
            continue  # reported as "not available" (bf16 without AVX512_BF16/AMX)
        bundle_id = f"{record.version}-{precision}"
        if bundle_id not in registry.bundles.bundle_ids(record.product):
            log.info("exporting %s", bundle_id)
            export_forced(registry, record.product, record.version, precision, dataset_dir)
        bundles[precision] = registry.bundles.bundle_dir(record.product, bundle_id)
    return bundles


def measure(engine: str, model: Path, images_file: Path, scratch: Path) -> dict[str, Any]:
    out = scratch / f"{engine}.json"
    command = [
        sys.executable, __file__, "worker", "--model", str(model), "--images", str(images_file),
        "--out", str(out),
    ]  # fmt: skip
    log.info("measuring %s", engine)
    subprocess.run(command, check=True, cwd=ROOT)
    result = json.loads(out.read_text())
    result["maps"] = np.load(out.with_suffix(".npy"))
    return result


def accuracy(result: dict[str, Any], samples: list[Any]) -> dict[str, float | None]:
    from inspection.core.images import read_mask
    from inspection.core.metrics import image_auroc, pixel_auroc

    maps = result["maps"]
    masks = np.stack([read_mask(s.mask_path, maps.shape[1:]) for s in samples])
    scores, labels = np.asarray(result["scores"]), np.array([s.label for s in samples])
    return {"image_auroc": image_auroc(scores, labels), "pixel_auroc": pixel_auroc(maps, masks)}


def bench_kind(
    registry: Any, product: str, kind: str, dataset_dir: Path, work: Path,
    engines: tuple[str, ...], repeat: int, peaks: dict,
) -> dict:  # fmt: skip
    from inspection.data.dataset import load_dataset
    from inspection.training.registry_export import held_out_test_samples

    record = ensure_version(registry, product, kind, dataset_dir)
    bundles = ensure_bundles(registry, record, dataset_dir)
    work.mkdir(parents=True, exist_ok=True)
    samples = held_out_test_samples(record, load_dataset(dataset_dir))
    images_file = work / f"{kind}-images.json"
    images_file.write_text(json.dumps([str(s.path) for s in samples]))
    engines = tuple(e for e in engines if e in bundles)

    def run(engine: str, round_: int) -> dict:
        result = measure(engine, bundles[engine], images_file, work)
        if round_ == 0:  # outputs are deterministic: score them once
            result.update(accuracy(result, samples))
        del result["maps"], result["scores"]
        best = max(result["throughput_ips"], key=result["throughput_ips"].get)
        return result | {"best_throughput_ips": result["throughput_ips"][best],
                         "best_throughput_mode": best}  # fmt: skip

    runs = rounds({engine: partial(run, engine) for engine in engines}, repeat)
    rows = {e: merge_runs(results) | {"gate": _gate(bundles, e)} for e, results in runs.items()}
    limit = graph_limit(bundles["fp32"])
    limit["per_engine_ms"] = {
        engine: limit_ms(limit["gflop_served"], peaks, engine) for engine in bundles
    }
    if "int8" in bundles:  # its float layers (stem, reverted ones) at the f32 peak
        limit["int8_gflop_served"] = graph_limit(bundles["int8"])["gflop_served"]
        limit["per_engine_ms"]["int8"] = limit_ms(limit["int8_gflop_served"], peaks, "int8")
    return {
        "model_version": record.model_version,
        "image_size": list(record.preprocessing().input_size),
        "test_images": len(samples),
        "engines": rows,
        "limit": limit,
        "station_choice": station_choice(rows),
    }


def merge_runs(results: list[dict]) -> dict:
    """One engine's row from its repeated runs: the run with the median p50 (its stages and
    settings), its accuracy, the median best throughput, and every run's figures."""
    by_p50 = sorted(results, key=lambda r: r["latency_ms"]["p50"])
    row = {**by_p50[(len(by_p50) - 1) // 2], **{k: results[0][k] for k in ACCURACY_KEYS}}
    row["best_throughput_ips"] = float(np.median([r["best_throughput_ips"] for r in results]))
    row["runs"] = [
        {
            "p50_ms": round(r["latency_ms"]["p50"], 3),
            "paced_p50_ms": round(r["paced_modes_ms"]["sleep"]["p50"], 3),
            "best_throughput_ips": round(r["best_throughput_ips"], 1),
            "loadavg_1m": r["loadavg_1m"],
        }
        for r in results
    ]  # fmt: skip
    return row


def _gate(bundles: dict[str, Path], precision: str) -> dict[str, Any]:
    from inspection.core.bundle import read_bundle_metadata
    from inspection.runtime.tuning import gate_status

    fp32 = read_bundle_metadata(bundles["fp32"])
    auroc = fp32.evaluation().image_auroc
    passed, note = gate_status(read_bundle_metadata(bundles[precision]), auroc)
    return {"passed": passed, "note": note}


def station_choice(rows: dict[str, dict]) -> dict[str, Any]:
    """What ``inspection station tune`` picks from these figures (same rule, same gate)."""
    from inspection.runtime.tuning import PrecisionMeasurement, choose_fastest

    chosen = choose_fastest([
        PrecisionMeasurement(engine, engine, row["latency_ms"]["p50"], row["latency_ms"]["p95"],
                             row["best_throughput_ips"], row["gate"]["passed"],
                             row["gate"]["note"])
        for engine, row in rows.items()
    ])  # fmt: skip
    fp32 = rows["fp32"]
    out: dict[str, Any] = {
        "precision": chosen.precision,
        "p50_ms": chosen.p50_ms,
        "best_throughput_ips": chosen.throughput_ips,
        "pass_p50_target": chosen.p50_ms <= LATENCY_TARGET_MS,
        "pass_throughput_target": chosen.throughput_ips >= THROUGHPUT_TARGET_IPS,
    }
    if "int8" in rows:
        out["int8_vs_fp32_throughput"] = round(
            rows["int8"]["best_throughput_ips"] / fp32["best_throughput_ips"], 2
        )
        out["int8_vs_fp32_p50"] = round(
            fp32["latency_ms"]["p50"] / rows["int8"]["latency_ms"]["p50"], 2
        )
    return out


# ===================================================================== machine facts
def graph_flops(model: Any) -> dict[str, float]:
    """FLOPs (2 x multiply-adds) of a model's convolutions and matmuls, by part:
    ``blur`` (anomaly-map smoothing), ``knn`` (memory-bank distances), ``network`` (the rest);
    in a quantised model, ``network_fp32``: the network's layers left in float (no
    FakeQuantize feeds them: the input stem)."""
    parts = {"network": 0.0, "network_fp32": 0.0, "knn": 0.0, "blur": 0.0}
    ops = model.get_ordered_ops()
    quantised = any(node.get_type_name() == "FakeQuantize" for node in ops)
    for node in ops:
        kind = node.get_type_name()
        if kind not in ("Convolution", "GroupConvolution", "MatMul"):
            continue
        out_shape = [int(d) for d in node.output(0).get_partial_shape().to_shape()]
        weights = [int(d) for d in node.input_value(1).get_partial_shape().to_shape()]
        if kind == "Convolution":  # weights (O, I, kh, kw)
            macs = np.prod(out_shape) * np.prod(weights[1:])
        elif kind == "GroupConvolution":  # weights (G, O/G, I/G, kh, kw)
            macs = np.prod(out_shape) * np.prod(weights[2:])
        else:
            a = [int(d) for d in node.input_value(0).get_partial_shape().to_shape()]
            transpose_a = node.get_attributes().get("transpose_a", False)
            inner = a[-2] if transpose_a else a[-1]
            macs = np.prod(out_shape) * inner
        name = node.get_friendly_name()
        map_head = "blur" in name or name.endswith(("/rows", "/linear"))  # runtime.graph's
        part = "blur" if map_head else "knn" if kind == "MatMul" else "network"
        source = node.input_value(0).get_node().get_type_name()
        part = (
            "network_fp32" if part == "network" and quantised and source != "FakeQuantize" else part
        )
        parts[part] += 2.0 * float(macs)
    return parts


def graph_limit(bundle: Path) -> dict[str, Any]:
    """The model's FLOPs at batch 1, as exported and as served (after the load-time rewrites);
    ``_peaks.limit_ms`` turns them into each precision's floor at this CPU's measured peak."""
    import openvino as ov

    from inspection.core.bundle import read_bundle_metadata
    from inspection.runtime.graph import optimize_graph

    meta = read_bundle_metadata(bundle)
    model = ov.Core().read_model(bundle / meta.model_file)
    prep = meta.preprocessing
    shape = [1, *prep.input_size, 3] if prep.in_graph else [1, 3, *prep.input_size]
    model.reshape({model.inputs[0]: shape})
    exported = graph_flops(model)
    notes = optimize_graph(model)
    served = graph_flops(model)
    total = sum(served.values())
    return {
        "gflop_exported": {k: round(v / 1e9, 3) for k, v in exported.items()},
        "gflop_served": {k: round(v / 1e9, 3) for k, v in served.items()},
        "gflop_total": round(total / 1e9, 3),
        "graph_rewrites": notes,
    }


def machine_report() -> dict[str, Any]:
    from dataclasses import asdict

    from inspection.runtime.hardware import cpu_info, load_1m

    info = cpu_info()
    return {
        **asdict(info),
        "summary": info.summary(),
        "python": platform.python_version(),
        "precision_peaks": precision_peaks(),
        "load_1m_start": load_1m(),
    }


# ========================================================================== report
def markdown(report: dict) -> str:
    machine = report["machine"]
    peaks = [[name, f"{peak['gflops']:.0f}",
              peak["executed_precision"] if peak["native"] else "not available (runs f32)",
              ", ".join(peak["kernels"])]
             for name, peak in machine.get("precision_peaks", {}).items()]  # fmt: skip
    lines = [
        "# Runtime benchmark: OpenVINO bundles, on this machine",
        "",
        f"- CPU: **{machine['summary']}**",
        f"- OpenVINO {machine['openvino']} CPU capabilities: {', '.join(machine['capabilities'])}",
        f"- 1-minute load at start {machine['load_1m_start']}, at end {report['load_1m_end']} "
        "(per-engine loads in the tables)",
        f"- Product `{report['product']}`, held-out test split, each engine in its own "
        "process. Latency: decoded RGB image in, full result out (preprocess, inference, "
        "normalisation, map resize, regions); decode is listed separately. p50/p95: images "
        "back to back (a decode between them); paced: one image every "
        f"{1 / PACED_HZ * 1e3:.0f} ms, the cores idle in between, as on a slow line. Every "
        f"engine ran {report.get('repeat', 1)} time(s), in rounds (all engines, then again); "
        "a row is the run with the median p50, its best throughput the median of the runs.",
        "",
        "Measured matmul peak per precision (OpenVINO, one 2048^3 MatMul on all cores; int8 "
        "via FakeQuantize, which OpenVINO lowers to an integer matmul):",
        "",
        *table(["precision", "GFLOP/s (int8: GOP/s)", "executed", "kernels"], peaks),
        "",
    ]
    for kind, data in report["kinds"].items():
        lines += _kind_lines(kind, data)
    return "\n".join(lines) + "\n"


def _kind_lines(kind: str, data: dict) -> list[str]:
    engines, limit, choice = data["engines"], data["limit"], data["station_choice"]
    floors = limit.get("per_engine_ms", {})
    stages = ("decode", "preprocess", "infer", "postprocess", "regions")
    main = [[engine, _p50_cell(row), f"{row['latency_ms']['p95']:.1f}", _paced(row, "sleep"),
             f"{row['best_throughput_ips']:.1f} ({row['best_throughput_mode']})",
             f"{_f(row['image_auroc'])} / {_f(row['pixel_auroc'])}",
             row.get("gate", {}).get("note", "-"),
             " / ".join(f"{x:.1f}" for x in row["loadavg_1m"])]
            for engine, row in engines.items()]  # fmt: skip
    precision = [[engine, row.get("executed_precision", "?"),
                  (row.get("golden") or {}).get("worst_drift", "-"),
                  floors.get(engine, "-"), f"{row['latency_ms']['p50']:.2f}",
                  *(_paced(row, m, ratio=True) for m in PACED_MODES)]
                 for engine, row in engines.items() if "paced_modes_ms" in row]  # fmt: skip
    if "bf16" not in engines:
        precision.append(["bf16", "not available on this CPU"] + ["-"] * (3 + len(PACED_MODES)))
    per_stage = [[engine, *(f"{row['stages_ms_p50'].get(n, 0.0):.2f}" for n in stages),
                  _floor_cell(row, floors.get(engine)), _settings(row)]
                 for engine, row in engines.items() if "stages_ms_p50" in row]  # fmt: skip
    served = limit["gflop_served"]
    lines = [
        f"## {kind} ({data['model_version']}, input {data['image_size']}, "
        f"{data['test_images']} test images)",
        "",
        *table(["engine", "p50 ms (runs' range)", "p95 ms",
                f"p50 / p95 ms at {PACED_HZ:g} parts/s", "best img/s (mode)",
                "image / pixel AUROC", "gate", "load before/after"], main),
        "",
        "Per precision: executed precision, floor at the measured peak, back-to-back and paced "
        f"p50 (ms; x back-to-back) while the station waits by {', '.join(PACED_MODES)}:",
        "",
        *table(["bundle", "executed", "golden drift", "floor ms", "p50 ms",
                *(f"paced {m}" for m in PACED_MODES)], precision),
        "",
        "Per-stage p50 (ms), inference against the machine limit of its precision (its "
        "floor at this CPU's measured peak) and OpenVINO settings (latency / throughput "
        "compile):",
        "",
        *table(["engine", *stages, "infer / floor", "threads, streams, hint"], per_stage),
        "",
        f"- Machine limit: {limit['gflop_total']} GFLOP per image as served (network "
        f"{served['network']}, kNN {served['knn']}, map head {served['blur']}; the exported "
        f"blur was {limit['gflop_exported']['blur']}) at the f32 peak = "
        f"**{floors['fp32']} ms**; measured FP32 infer p50 "
        f"{engines['fp32']['stages_ms_p50']['infer']:.2f} ms.",
        f"- Station's choice (fastest gated, same rule as `inspection station tune`): "
        f"**{choice['precision']}**, p50 {choice['p50_ms']:.1f} ms "
        f"(target <= {LATENCY_TARGET_MS:g}: {_met(choice['pass_p50_target'])}), best "
        f"{choice['best_throughput_ips']:.1f} img/s (target >= {THROUGHPUT_TARGET_IPS:g}: "
        f"{_met(choice['pass_throughput_target'])})",
    ]  # fmt: skip
    if limit.get("graph_rewrites"):
        lines.append("- Load-time graph rewrites: " + "; ".join(limit["graph_rewrites"]))
    if "int8_vs_fp32_throughput" in choice:
        lines.append(
            f"- INT8 vs FP32 here: throughput {choice['int8_vs_fp32_throughput']}x, latency "
            f"{choice['int8_vs_fp32_p50']}x"
            + (" — INT8 does not pay on this CPU." if choice["int8_vs_fp32_throughput"] < 1 else "")
        )
    return [*lines, ""]


def _paced(row: dict, mode: str, ratio: bool = False) -> str:
    """Paced p50 / p95 of ``mode``, or its p50 with the ratio to back to back."""
    paced, p50 = row.get("paced_modes_ms", {}).get(mode), row["latency_ms"]["p50"]
    if paced is None:  # a row of an earlier bench (--keep)
        return "-"
    if ratio:
        return f"{paced['p50']:.2f} ({paced['p50'] / p50:.2f}x)"
    return f"{paced['p50']:.1f} / {paced['p95']:.1f}"


def _floor_cell(row: dict, floor: float | None) -> str:
    return (
        "-"
        if not floor
        else f"{row['stages_ms_p50'].get('infer', 0.0) / floor:.2f}x of {floor:.2f} ms"
    )


def _settings(row: dict) -> str:
    lat, thr = row["openvino_latency"], row["openvino_throughput"]
    return (
        f"{lat['INFERENCE_NUM_THREADS']}t x {lat['NUM_STREAMS']}s {lat['PERFORMANCE_HINT']} / "
        f"{thr['INFERENCE_NUM_THREADS']}t x {thr['NUM_STREAMS']}s {thr['PERFORMANCE_HINT']} "
        f"({thr['OPTIMAL_NUMBER_OF_INFER_REQUESTS']} requests)"
    )


def _p50_cell(row: dict) -> str:
    """The median run's p50, and the range over the runs when there were several."""
    p50s = [run["p50_ms"] for run in row["runs"]]
    median = f"{row['latency_ms']['p50']:.1f}"
    return median if len(p50s) < 2 else f"{median} ({min(p50s):.1f}–{max(p50s):.1f})"


def _met(flag: bool) -> str:
    return "met" if flag else "**NOT met**"


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def scratch_registry(path: Path) -> Path:
    """``path`` when it is the bench's own registry: never a site's (its signing key beside it,
    or the one ``configs/site.yaml`` names), where the bundles exported here with ``force``
    and no signed force record would sit beside the site's for a station to meet."""
    from inspection.core.config import load_site_config
    from inspection.core.signing import PRIVATE_KEY_FILE, site_keys_dir

    site_registry = load_site_config(None).registry_dir
    if (site_keys_dir(path) / PRIVATE_KEY_FILE).is_file() or (
        path.resolve() == Path(site_registry).resolve()
    ):
        raise SystemExit(
            f"--registry {path} is a site's registry; the bench exports every precision "
            "there, forced: give it a scratch folder (default var/bench/registry)"
        )
    return path


def run_parent(args: argparse.Namespace) -> None:
    from inspection.core.registry import Registry
    from inspection.runtime.hardware import load_1m

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    registry = Registry(scratch_registry(Path(args.registry)))
    dataset_dir = ensure_dataset(args.product, Path(args.datasets))
    out = Path(args.out)
    if args.prepare_only:  # train and export outside the timed run
        for kind in args.kinds:
            record = ensure_version(registry, args.product, kind, dataset_dir)
            ensure_bundles(registry, record, dataset_dir)
        return
    machine = machine_report()
    report: dict[str, Any] = {
        "product": args.product, "machine": machine, "repeat": args.repeat, "kinds": {},
    }  # fmt: skip
    if args.keep:  # keep other kinds' figures from an earlier run
        report["kinds"] = previous_report(out, "runtime").get("kinds", {})
    with tempfile.TemporaryDirectory(prefix="bench-runtime-") as scratch:
        for kind in args.kinds:
            report["kinds"][kind] = bench_kind(
                registry, args.product, kind, dataset_dir, Path(scratch) / kind,
                tuple(args.engines), args.repeat, machine["precision_peaks"],
            )  # fmt: skip
            report["load_1m_end"] = load_1m()
            save_report(out, "runtime", report, markdown(report))
    print(markdown(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    worker = sub.add_parser("worker", help="internal: measure one engine")
    worker.add_argument("--model", required=True)
    worker.add_argument("--images", required=True)
    worker.add_argument("--out", required=True)
    parser.add_argument("--product", default="brick")
    parser.add_argument("--kinds", nargs="+", default=["patchcore", "stfpm"])
    parser.add_argument("--datasets", default=str(ROOT / "datasets"))
    parser.add_argument(
        "--registry",
        default=str(ROOT / "var" / "bench" / "registry"),
        help="The bench's own registry (never a site's: it exports every precision, forced).",
    )
    parser.add_argument("--out", default=str(ROOT / "reports" / "runtime"))
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument(
        "--repeat", type=int, default=3,
        help="Measure every engine this many times, in rounds; rows give the median run.",
    )  # fmt: skip
    parser.add_argument(
        "--keep", action="store_true", help="Keep other kinds' results from runtime.json."
    )
    parser.add_argument(
        "--prepare-only", action="store_true", help="Train and export only; measure nothing."
    )
    args = parser.parse_args()
    if args.command == "worker":
        run_worker(args)
    else:
        run_parent(args)


if __name__ == "__main__":
    main()
