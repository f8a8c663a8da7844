"""Run a numeric OpenVINO test under a named CPU inference precision, on any CPU.

OpenVINO's CPU default is bf16 on Intel CPUs with AVX512_BF16 or AMX and f32 elsewhere, so a
test that compiles without a hint means different numerics on different machines. Numeric
tests take the ``ov_precision`` fixture (``tests/conftest.py``) and run once per precision:

- ``f32``: pinned with ``INFERENCE_PRECISION_HINT=f32`` everywhere;
- ``bf16``: native where the CPU executes bf16; elsewhere (AVX2) *emulated*: every
  intermediate f32 tensor is rounded to bf16's 8-bit mantissa (``emulate_bf16``) and the graph
  runs in f32. The rounding is arithmetic (``round_to_bf16``), not a ``Convert`` to bf16 and
  back: on a CPU without bf16, OpenVINO's CPU plugin lowers bf16 tensors to f32, so such a pair
  is a no-op there (seen on an AVX2-only AMD EPYC). That reproduces bf16 storage with f32 accumulation, which is how AVX512_BF16 and AMX
  kernels compute. It cannot reproduce a kernel's own blocking and accumulation order, the ops
  OpenVINO keeps in f32 under a bf16 hint, or fused ops that skip a rounding; tolerances are
  therefore set for bf16's 8-bit mantissa, not tuned to one CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import openvino as ov
import openvino.opset13 as ops

TestPrecision = Literal["f32", "bf16"]
TEST_PRECISIONS: tuple[TestPrecision, ...] = ("f32", "bf16")

_SKIP_ROUNDING = {"Result", "Constant", "Convert", "Parameter"}
_BF16_MANTISSA_BITS = 7
_SMALLEST_ROUNDED = 2.0**-100
"""Magnitudes below this round on its grid: the step stays a normal float, which the CPU does not
flush to zero (2**-126 would give a subnormal step and 0 / 0 for an exact zero)."""


@dataclass(frozen=True)
class Tolerance:
    """``np.testing.assert_allclose`` bounds for outputs compared at one precision."""

    rtol: float
    atol_of_range: float
    """Absolute tolerance as a fraction of the expected output's largest magnitude."""

    def assert_close(self, got: np.ndarray, expected: np.ndarray) -> None:
        scale = float(np.abs(expected).max()) or 1.0
        np.testing.assert_allclose(got, expected, rtol=self.rtol, atol=self.atol_of_range * scale)


# bf16 keeps 8 mantissa bits (relative step 2**-8 = 0.4 %); two graphs computing the same
# function in a different order may each round a few times, so 3 % of the output range.
TOLERANCES: dict[TestPrecision, Tolerance] = {
    "f32": Tolerance(rtol=1e-5, atol_of_range=1e-5),
    "bf16": Tolerance(rtol=3e-2, atol_of_range=3e-2),
}


def cpu_executes_bf16() -> bool:
    """True when OpenVINO's CPU plugin runs bf16 natively on this machine."""
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def round_to_bf16(output: ov.Output) -> ov.Node:
    """``output`` rounded to the nearest bf16 value (ties to even), computed in f32 ops.

    ``step = 2 ** (floor(log2 |x|) - 7)`` is the bf16 spacing at ``x``; ``round(x / step) * step``
    is then exact, because dividing by a power of two is. ``log`` may put a power of two one
    binade low, so the exponent is corrected by comparison.
    """

    def scalar(value: float) -> ov.Node:
        return ops.constant(np.float32(value))

    magnitude = ops.maximum(ops.abs(output), scalar(_SMALLEST_ROUNDED))
    exponent = ops.floor(ops.multiply(ops.log(magnitude), scalar(1.0 / np.log(2.0))))
    power = ops.power(scalar(2.0), exponent)
    too_low = ops.greater_equal(magnitude, ops.multiply(power, scalar(2.0)))
    exponent = ops.select(too_low, ops.add(exponent, scalar(1.0)), exponent)
    too_high = ops.less(magnitude, power)
    exponent = ops.select(too_high, ops.subtract(exponent, scalar(1.0)), exponent)
    step = ops.power(scalar(2.0), ops.subtract(exponent, scalar(_BF16_MANTISSA_BITS)))
    return ops.multiply(ops.round(ops.divide(output, step), "half_to_even"), step)


def emulate_bf16(model: ov.Model) -> ov.Model:
    """Round every intermediate f32 output of ``model`` to bf16 (``round_to_bf16``), in place."""
    for node in list(model.get_ordered_ops()):
        if node.get_type_name() in _SKIP_ROUNDING:
            continue
        for output in node.outputs():
            if output.get_element_type() != ov.Type.f32:
                continue
            consumers = list(output.get_target_inputs())
            rounded = round_to_bf16(output)
            for consumer in consumers:
                consumer.replace_source_output(rounded.output(0))
    return model


def compile_at(model: ov.Model, precision: TestPrecision) -> ov.CompiledModel:
    """Compile ``model`` for the CPU so that it computes at ``precision`` (see module doc)."""
    core = ov.Core()
    if precision == "bf16" and not cpu_executes_bf16():
        return core.compile_model(emulate_bf16(model), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision})


def executed_precision(compiled: ov.CompiledModel) -> str:
    """The precision OpenVINO reports it executes (``float32``, ``bfloat16``, ...)."""
    return compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
