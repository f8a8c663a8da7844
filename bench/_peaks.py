"""This CPU's measured matmul peak per precision, through OpenVINO itself: the floor a perfectly
efficient runtime could reach for a given FLOP count.

One (n, n) x (n, n) MatMul compiled at each precision: ``f32``; ``bf16`` and ``f16`` by
``INFERENCE_PRECISION_HINT`` (OpenVINO silently runs f32 where the CPU lacks them, which the
executed precision and kernels show); ``int8`` as FakeQuantize on both inputs, which OpenVINO
lowers to an integer matmul (VNNI/AMX-INT8 where present).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

PEAK_SIZE = 2048
PEAK_SECONDS = 0.6
PEAK_PRECISIONS = ("f32", "bf16", "f16", "int8")


def _matmul(n: int, *, quantized: bool) -> Any:
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    x = ops.parameter([n, n], np.float32)
    w = ops.constant(rng.uniform(-0.5, 0.5, (n, n)).astype(np.float32))
    if not quantized:
        return ov.Model([ops.matmul(x, w, False, False)], [x])
    low, high = ops.constant(np.float32(0.0)), ops.constant(np.float32(1.0))
    w_low, w_high = ops.constant(np.float32(-0.5)), ops.constant(np.float32(0.5))
    xq = ops.fake_quantize(x, low, high, low, high, 256)  # u8 activations
    wq = ops.fake_quantize(w, w_low, w_high, w_low, w_high, 255)  # i8 weights
    return ov.Model([ops.matmul(xq, wq, False, False)], [x])


def matmul_peak(precision: str, n: int = PEAK_SIZE, seconds: float = PEAK_SECONDS) -> dict:
    """GFLOP/s (2 n^3 per product) of one MatMul at ``precision`` on all cores, with the
    precision and kernels OpenVINO actually executed."""
    import openvino as ov

    from inspection.runtime.golden import executed_kernels, executed_precision

    hint = "f32" if precision == "int8" else precision
    model = _matmul(n, quantized=precision == "int8")
    compiled = ov.Core().compile_model(
        model, "CPU", {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
    )
    request = compiled.create_infer_request()
    x = np.random.default_rng(1).random((n, n), dtype=np.float32)
    for _ in range(2):
        request.infer({0: x})
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or reps < 3:
        request.infer({0: x})
        reps += 1
    per_call = (time.perf_counter() - start) / reps
    return {
        "gflops": round(2 * n**3 / per_call / 1e9, 1),
        "executed_precision": executed_precision(compiled),
        "kernels": list(executed_kernels(compiled)),
        "size": n,
    }


def precision_peaks() -> dict[str, dict]:
    """``matmul_peak`` of every precision in ``PEAK_PRECISIONS``, ``native: False`` where its
    kernels fall back to f32 (not available on this CPU)."""
    tags = {"f32": ("",), "bf16": ("bf16",), "f16": ("f16",), "int8": ("i8", "int8", "u8")}
    peaks = {}
    for precision in PEAK_PRECISIONS:
        peak = matmul_peak(precision)
        kernels = " ".join(peak["kernels"]).lower()
        peaks[precision] = {**peak, "native": any(tag in kernels for tag in tags[precision])}
    return peaks


def limit_ms(gflop: dict[str, float], peaks: dict[str, dict], engine: str) -> float | None:
    """The floor of ``engine``'s inference at batch 1: its FLOPs at the peak of the precision
    each part runs in. INT8 bundles keep the kNN, map head and the network's float layers
    (``network_fp32``: input stem, reverted layers) in FP32; fp16 bundles run f32 (they pin
    ``INFERENCE_PRECISION_HINT=f32``)."""
    if engine not in ("fp32", "fp16", "int8", "bf16"):
        return None
    head = gflop["knn"] + gflop["blur"] + gflop.get("network_fp32", 0.0)
    body = {"int8": "int8", "bf16": "bf16"}.get(engine, "f32")
    body = body if peaks[body]["native"] else "f32"
    tail = "bf16" if body == "bf16" else "f32"
    seconds = gflop["network"] / peaks[body]["gflops"] + head / peaks[tail]["gflops"]
    return round(seconds * 1e3, 3)
