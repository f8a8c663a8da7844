"""The bf16 emulation the numeric tests use on CPUs without bf16 is real bf16 rounding."""

from __future__ import annotations

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from tests.ov_precision import compile_at, cpu_executes_bf16, emulate_bf16, executed_precision


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
