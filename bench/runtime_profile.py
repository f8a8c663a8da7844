"""Where a PatchCore bundle's inference time goes: OpenVINO per-layer counters, by stage.

    /work/bin/heavy python bench/runtime_profile.py --bundle var/bench/registry/brick/bundles/v0001-fp32

Compiles the bundle's graph twice, as the station served it before (dynamic batch, Gaussian
blur split in two) and as ``Inspector.from_bundle`` serves it now (``runtime.graph.
optimize_graph``: map head as two matmuls, nearest-neighbour minimum before the square root;
static batch of one), runs batch-1 inference with ``PERF_COUNT`` on and sums OpenVINO's
per-layer times into stages: backbone, feature pooling, kNN distance + minimum, image score,
map head, input reorder. Proportions hold up under some load; absolute figures do not, so
the report also gives CPU time per inference with one thread (``getrusage``), which other
jobs on the machine disturb much less than wall time. Also checks that both graphs give
the same outputs. ``--what-if-hint bf16`` also profiles the served graph at that precision
hint instead of the bundle's pinned one (an INT8 bundle's float layers, the kNN head among them,
in bf16 on AMX). Writes ``reports/runtime/profile.json`` and ``profile.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STAGES: tuple[tuple[str, str], ...] = (
    ("map head", r"anomaly_map_generator|/linear$|/rows$"),
    ("kNN distance + min", r"aten::(matmul/MatMul|mul_/Multiply|pow/Power|sum/ReduceSum|"
     r"add_/Add|add_/Add_1|clamp_min_/Maximum|sqrt_/Sqrt)(/|$)|aten::min/"),
    ("feature pooling", r"feature_pooler|upsample_bilinear2d|aten::cat/|aten::permute/"),
    ("backbone", r"feature_extractor|^Multiply_\d+$"),
)  # fmt: skip
"""Stage of an (original) layer name of anomalib's PatchCore graph; first match wins."""
OTHER = "image score + other"


def stage_of(names: list[str], layer_type: str) -> str:
    """The stage of a compiled layer from the original layers fused into it."""
    if layer_type == "Reorder" and any(n.startswith("x_") or n == "x" for n in names):
        return "input reorder"
    for stage, pattern in STAGES:
        if any(re.search(pattern, name) for name in names):
            return stage
    return OTHER


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def build(bundle: Path, served: bool) -> Any:
    """The bundle's graph as served before (dynamic batch, blur split) or now."""
    import openvino as ov

    from inspection.core.bundle import read_bundle_metadata
    from inspection.runtime.graph import optimize_graph, separate_blur_kernels

    meta = read_bundle_metadata(bundle)
    model = ov.Core().read_model(bundle / meta.model_file)
    if not served:
        separate_blur_kernels(model)
        return model
    optimize_graph(model)
    model.reshape({model.inputs[0]: [1, 3, *meta.preprocessing.input_size]})
    return model


def profile(
    model: Any, threads: int, runs: int, x: np.ndarray, precision: str | None = None
) -> dict[str, Any]:
    """Per-stage ms (mean of ``runs``), wall p50 and CPU ms per inference, outputs;
    ``precision``: the bundle's pinned inference precision (as the station compiles it)."""
    import openvino as ov

    core = ov.Core()
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    if precision:
        config["INFERENCE_PRECISION_HINT"] = precision
    compiled = core.compile_model(model, "CPU", {**config, "PERF_COUNT": True})
    originals = {
        node.get_friendly_name(): [
            n for n in node.get_rt_info()["originalLayersNames"].astype(str).split(",") if n
        ]
        for node in compiled.get_runtime_model().get_ordered_ops()
    }
    request = compiled.create_infer_request()
    for _ in range(5):
        request.infer({0: x})
    stages: dict[str, float] = defaultdict(float)
    layers: dict[str, float] = defaultdict(float)
    for _ in range(runs):
        request.infer({0: x})
        for info in request.profiling_info:
            ms = info.real_time.total_seconds() * 1e3 / runs
            names = originals.get(info.node_name) or [info.node_name]
            stages[stage_of(names, info.node_type)] += ms
            layers[f"{info.node_type} {info.node_name}"] += ms
    outputs = [np.asarray(v).copy() for v in request.infer({0: x}).values()]
    plain = core.compile_model(model, "CPU", config).create_infer_request()
    for _ in range(5):
        plain.infer({0: x})
    walls = []
    cpu_start = _cpu_seconds()
    for _ in range(runs):
        start = time.perf_counter()
        plain.infer({0: x})
        walls.append((time.perf_counter() - start) * 1e3)
    return {
        "stages_ms": {k: round(v, 3) for k, v in sorted(stages.items(), key=lambda kv: -kv[1])},
        "layers_sum_ms": round(sum(stages.values()), 3),
        "wall_p50_ms": round(float(np.median(walls)), 3),
        "cpu_ms_per_inference": round((_cpu_seconds() - cpu_start) * 1e3 / runs, 3),
        "top_layers_ms": {
            k: round(v, 3) for k, v in sorted(layers.items(), key=lambda kv: -kv[1])[:12]
        },
        "outputs": outputs,
    }


BANK_ROWS = (614, 1228, 3072, 8192)
"""Memory banks of 60, 120, 300 and 1000+ training images at the default 1 % coreset
(``memory_bank_max`` caps at 8192 rows)."""


def bank_scan(patches: int, dim: int, runs: int) -> list[dict[str, float]]:
    """Batch-1 time of the served kNN step alone (one GEMM + bias + minimum, as
    ``runtime.graph.fold_patch_distances`` leaves it) for each bank size in ``BANK_ROWS``, in
    FP32 (served) and with the GEMM in INT8 (8-bit patches, per-row 8-bit bank), alternating."""
    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(size=(patches, dim))).astype(np.float32)  # post-ReLU-like features
    rows = []
    for bank_rows in BANK_ROWS:
        bank = rng.normal(size=(bank_rows, dim)).astype(np.float32)
        requests = {precision: _knn_request(bank, x, precision) for precision in ("fp32", "int8")}
        walls: dict[str, list[float]] = {precision: [] for precision in requests}
        for _ in range(runs):
            for precision, request in requests.items():
                start = time.perf_counter()
                request.infer({0: x})
                walls[precision].append((time.perf_counter() - start) * 1e3)
        gflop = 2.0 * patches * dim * bank_rows / 1e9
        ms = {precision: float(np.median(times)) for precision, times in walls.items()}
        rows.append({
            "bank_rows": bank_rows, "gflop": round(gflop, 3), "p50_ms": round(ms["fp32"], 3),
            "gflops_achieved": round(gflop / ms["fp32"] * 1e3, 1),
            "int8_p50_ms": round(ms["int8"], 3),
        })  # fmt: skip
    return rows


def _knn_request(bank: np.ndarray, x: np.ndarray, precision: str) -> Any:
    """A warmed-up request of the kNN step of ``x`` over ``bank``; ``int8``: fake-quantised
    patches and an int8 bank with per-row scales, which OpenVINO runs as a u8 x i8 GEMM."""
    import openvino as ov
    import openvino.opset13 as ops

    query = ops.parameter(list(x.shape), np.float32)
    patches, weights = query.output(0), ops.constant(bank).output(0)
    if precision == "int8":
        low, high = (ops.constant(np.float32(v)) for v in (0.0, float(x.max())))
        patches = ops.fake_quantize(query, low, high, low, high, 256).output(0)
        scale = (np.abs(bank).max(axis=1, keepdims=True) / 127).astype(np.float32)
        quantised = ops.constant(np.round(bank / scale).astype(np.int8))
        weights = ops.multiply(ops.convert(quantised, np.float32), ops.constant(scale)).output(0)
    gemm = ops.matmul(patches, weights, False, True)
    scores = ops.add(gemm, ops.constant((bank**2).sum(1, keepdims=True).T.copy()))
    nearest = ops.topk(scores, np.int64(1), axis=-1, mode="min", sort="none")
    model = ov.Model([nearest.output(0), nearest.output(1)], [query])
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    compiled = ov.Core().compile_model(model, "CPU", config)  # FP32 as labelled, on any CPU
    request = compiled.create_infer_request()
    for _ in range(5):
        request.infer({0: x})
    return request


def run(bundle: Path, runs: int, what_if_hint: str | None = None) -> dict[str, Any]:
    """Profile the bundle's graph as served before and now, at 1 and all threads;
    ``what_if_hint``: also the served graph at that ``INFERENCE_PRECISION_HINT`` instead of the
    bundle's pinned one (e.g. an INT8 bundle's float layers in bf16), all threads."""
    from inspection.core.bundle import read_bundle_metadata

    meta = read_bundle_metadata(bundle)
    height, width = meta.preprocessing.input_size
    x = np.random.default_rng(0).normal(size=(1, 3, height, width)).astype(np.float32)
    report: dict[str, Any] = {
        "bundle": f"{meta.product}/{meta.bundle_id}",
        "model_kind": meta.model_kind,
        "input_size": [height, width],
        "runs": runs,
        "inference_precision": meta.inference_precision or "OpenVINO's default",
        "load_1m_start": round(os.getloadavg()[0], 2),
        "graphs": {},
    }
    graphs = {served: build(bundle, served) for served in (False, True)}
    for threads in (1, os.cpu_count() or 1):
        for served, model in graphs.items():
            label = f"{'served now' if served else 'served before'}, {threads} thread(s)"
            report["graphs"][label] = profile(model, threads, runs, x, meta.inference_precision)
    if what_if_hint:
        label = f"served now, {os.cpu_count()} thread(s), {what_if_hint} hint (what-if)"
        report["graphs"][label] = profile(graphs[True], os.cpu_count() or 1, runs, x, what_if_hint)
    knn_input = _knn_input_shape(graphs[True])
    if knn_input is not None:
        report["bank_scan"] = {"patches": knn_input[0], "dim": knn_input[1],
                               "rows": bank_scan(*knn_input, runs)}  # fmt: skip
    report["load_1m_end"] = round(os.getloadavg()[0], 2)
    report["output_check"] = _compare(report["graphs"])
    for row in report["graphs"].values():
        del row["outputs"]
    return report


def _knn_input_shape(model: Any) -> tuple[int, int] | None:
    """(patches, feature dim) of the served graph's kNN GEMM, None without one."""
    for op in model.get_ordered_ops():
        if op.get_friendly_name().endswith("/gemm"):
            shape = op.input_value(0).get_partial_shape()
            if shape.is_static and len(shape) == 2:
                return int(shape[0].get_length()), int(shape[1].get_length())
    return None


def _compare(graphs: dict[str, dict]) -> dict[str, float]:
    """Largest difference between the graphs' outputs, relative to each output's range."""
    before, now = (g["outputs"] for g in list(graphs.values())[:2])
    return {
        f"output_{i}_max_rel_diff": float(np.abs(a - b).max() / max(1e-12, np.abs(a).max()))
        for i, (a, b) in enumerate(zip(before, now, strict=True))
    }


def write_markdown(report: dict[str, Any], path: Path) -> None:
    graphs = report["graphs"]
    stages = sorted({s for g in graphs.values() for s in g["stages_ms"]})
    lines = [
        f"# Where PatchCore inference time goes ({report['bundle']}, "
        f"{report['input_size'][0]} px, batch 1)",
        "",
        f"OpenVINO per-layer counters (`PERF_COUNT`), mean of {report['runs']} runs, summed by "
        f"stage, at the bundle's inference precision ({report.get('inference_precision', '-')});"
        f" 1-minute load {report['load_1m_start']} at start, {report['load_1m_end']} at "
        "end (proportions hold under load, absolute ms do not; CPU ms per inference with one "
        "thread is the least load-sensitive figure). *Before*: the exported graph with a "
        "dynamic batch and the blur split in two 1-D convolutions (the previous station "
        "runtime). *Now*: `runtime.graph.optimize_graph` and a static batch of one, as "
        "`Inspector.from_bundle` serves it.",
        "",
        "| stage (ms) | " + " | ".join(graphs) + " |",
        "|---|" + "---|" * len(graphs),
    ]
    for stage in stages:
        cells = " | ".join(f"{g['stages_ms'].get(stage, 0.0):.2f}" for g in graphs.values())
        lines.append(f"| {stage} | {cells} |")
    for key, label in (
        ("layers_sum_ms", "sum of layers"),
        ("wall_p50_ms", "wall p50 (no counters)"),
        ("cpu_ms_per_inference", "CPU ms per inference"),
    ):
        cells = " | ".join(f"{g[key]:.2f}" for g in graphs.values())
        lines.append(f"| **{label}** | {cells} |")
    checks = ", ".join(f"{k} {v:.1e}" for k, v in report["output_check"].items())
    lines += ["", f"Outputs before vs now (1 thread): {checks}.", ""]
    lines += _bank_scan_lines(report.get("bank_scan"))
    last = [label for label in graphs if "what-if" not in label][-1]
    lines += [f"Top layers, {last}:", "", "| layer | ms |", "|---|---|"]
    lines += [f"| `{k}` | {v:.3f} |" for k, v in graphs[last]["top_layers_ms"].items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _bank_scan_lines(scan: dict[str, Any] | None) -> list[str]:
    if not scan:
        return []
    lines = [
        f"The kNN step alone vs memory-bank size ({scan['patches']} patches x "
        f"{scan['dim']} features, {os.cpu_count()} threads). The bank grows with the training "
        "set (1 % of its patches, capped at 8192 rows), and a station's p50 with it:",
        "",
        "| bank rows | GFLOP | p50 ms (FP32, served) | GFLOP/s | p50 ms with the GEMM in INT8 |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['bank_rows']} | {r['gflop']} | {r['p50_ms']:.2f} | {r['gflops_achieved']} | "
        f"{r['int8_p50_ms']:.2f} |"
        for r in scan["rows"]
    ]
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True, help="A PatchCore bundle folder.")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--out", default=str(ROOT / "reports" / "runtime"))
    parser.add_argument(
        "--what-if-hint", choices=["f32", "bf16", "f16"],
        help="Also profile the served graph at this inference precision (not the bundle's).",
    )  # fmt: skip
    args = parser.parse_args()
    report = run(Path(args.bundle), args.runs, args.what_if_hint)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    write_markdown(report, out / "profile.md")
    print((out / "profile.md").read_text())


if __name__ == "__main__":
    main()
