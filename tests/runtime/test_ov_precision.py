"""The bf16 emulation the numeric tests use on CPUs without bf16 is real bf16 rounding."""

from __future__ import annotations

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from tests.ov_precision import (
    compile_at,
    cpu_executes_bf16,
    emulate_bf16,
    executed_precision,
    round_to_bf16,
)


def _matmul_chain() -> ov.Model:
    """(16, 64) x (64, 64) -> relu -> x (64, 8): two matmuls whose inputs bf16 would round."""
    rng = np.random.default_rng(3)
    x = ops.parameter([16, 64], np.float32, name="x")
    first = ops.relu(
        ops.matmul(x, ops.constant(rng.normal(size=(64, 64)).astype(np.float32)), False, False)
    )
    second = ops.matmul(
        first, ops.constant(rng.normal(size=(64, 8)).astype(np.float32)), False, False
    )
    return ov.Model([second], [x])


def _relative_error(got: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(got - reference).max() / np.abs(reference).max())


X = np.random.default_rng(5).normal(size=(16, 64)).astype(np.float32)


def test_f32_is_pinned_whatever_the_cpu_default() -> None:
    assert executed_precision(compile_at(_matmul_chain(), "f32")) == "f32"


def _bf16_reference(values: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even onto bf16 by the bits: keep the top 16 bits of each float32."""
    bits = values.astype(np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.astype(np.uint32).view(np.float32)


def test_rounding_is_bit_exact_bf16_on_this_cpu() -> None:
    """Graph rounding == bf16 rounding of every value, ties and powers of two included, on any
    CPU (a Convert to bf16 and back is a no-op where the CPU has no bf16)."""
    rng = np.random.default_rng(0)
    values = (rng.normal(size=4096) * np.exp(rng.uniform(-30, 30, size=4096))).astype(np.float32)
    ties = [1.00390625, 1.01171875, -3.0078125, 2.0, 0.5, 0.0, 1024.0, -1.0]  # 1 + 2**-8: a tie
    values[: len(ties)] = ties
    x = ops.parameter([values.size], np.float32, name="x")
    model = ov.Model([round_to_bf16(ops.negative(x).output(0))], [x])
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    np.testing.assert_array_equal(compiled(values)[0], _bf16_reference(-values))


def test_emulated_bf16_rounds_each_intermediate_to_an_8_bit_mantissa() -> None:
    core = ov.Core()
    exact = core.compile_model(_matmul_chain(), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(X)[0]
    emulated = core.compile_model(
        emulate_bf16(_matmul_chain()), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )(X)[0]
    error = _relative_error(emulated, exact)
    assert 1e-4 < error < 2e-2, error  # rounded (not a no-op), but to bf16, not coarser


@pytest.mark.skipif(not cpu_executes_bf16(), reason="this CPU does not execute bf16 natively")
def test_emulation_errs_like_this_cpus_native_bf16() -> None:
    core = ov.Core()
    exact = core.compile_model(_matmul_chain(), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(X)[0]
    native = core.compile_model(_matmul_chain(), "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
    emulated = core.compile_model(
        emulate_bf16(_matmul_chain()), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )
    assert executed_precision(native) == "bf16"
    native_error = _relative_error(native(X)[0], exact)
    emulated_error = _relative_error(emulated(X)[0], exact)
    assert native_error / 4 < emulated_error < native_error * 4, (native_error, emulated_error)
