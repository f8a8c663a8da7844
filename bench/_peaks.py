"""This CPU's measured matmul peak per precision, through OpenVINO itself.

One (n, n) x (n, n) MatMul graph compiled at each CPU inference precision OpenVINO offers here:
``f32``; ``bf16`` and ``f16`` by ``INFERENCE_PRECISION_HINT`` (native only where the CPU has
AVX512_BF16/AMX-BF16 or AVX512-FP16; OpenVINO silently runs f32 otherwise, which the recorded
executed precision and kernels show); ``int8`` as FakeQuantize on both inputs, which OpenVINO's
low-precision transformations turn into an integer matmul (VNNI/AMX-INT8 where present).
The figures are the floor a perfectly efficient runtime could reach for a given FLOP count.
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
    """``matmul_peak`` of every precision in ``PEAK_PRECISIONS``; a precision whose kernels
    fall back to f32 is marked ``native: False`` (not available on this CPU)."""
    peaks = {}
    for precision in PEAK_PRECISIONS:
        peak = matmul_peak(precision)
        kernels = " ".join(peak["kernels"])
        native = {
            "f32": True,
            "bf16": "bf16" in kernels,
            "f16": "f16" in kernels,
            "int8": any(tag in kernels.lower() for tag in ("i8", "int8", "u8")),
        }[precision]
        peaks[precision] = {**peak, "native": native}
    return peaks


def limit_ms(gflop: dict[str, float], peaks: dict[str, dict], engine: str) -> float | None:
    """The floor of ``engine``'s inference at batch 1: its FLOPs at the peak of the precision
    each part runs in. INT8 bundles keep the kNN and map head in FP32 (``keep_head_fp32``), and
    the network's float layers (``network_fp32``: input stem, reverted layers); fp16 bundles
    run f32 (their bundles pin ``INFERENCE_PRECISION_HINT=f32``)."""

    def rate(precision: str) -> float:
        return peaks[precision]["gflops"] * 1e9

    head = gflop["knn"] + gflop["blur"] + gflop.get("network_fp32", 0.0)
    if engine == "int8" and peaks["int8"]["native"]:
        seconds = gflop["network"] * 1e9 / rate("int8") + head * 1e9 / rate("f32")
    elif engine == "bf16" and peaks["bf16"]["native"]:
        seconds = (gflop["network"] + head) * 1e9 / rate("bf16")
    elif engine in ("fp32", "fp16", "int8", "bf16"):
        seconds = (gflop["network"] + head) * 1e9 / rate("f32")
    else:
        return None
    return round(seconds * 1e3, 3)
