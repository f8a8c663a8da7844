"""Which precisions this CPU executes natively: bf16 is a candidate only where it exists."""

from __future__ import annotations

import pytest

from inspection.runtime.hardware import CpuInfo, cpu_info, parse_cpuinfo

AVX2 = "model name\t: AMD EPYC 7B13\nflags\t\t: fpu sse4_2 avx avx2 fma f16c\n"
SAPPHIRE_RAPIDS = (
    "model name\t: Intel(R) Xeon(R) Processor\n"
    "flags\t\t: avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 avx512_fp16 amx_bf16 "
    "amx_tile amx_int8\n"
)
COOPER_LAKE = "model name\t: Intel Xeon 8380H\nflags\t\t: avx2 avx512f avx512_vnni avx512_bf16\n"


@pytest.mark.parametrize(
    ("cpuinfo", "capabilities", "bf16", "amx"),
    [
        (AVX2, (), False, False),
        (AVX2, ("FP32", "FP16", "INT8", "BIN", "EXPORT_IMPORT"), False, False),
        (SAPPHIRE_RAPIDS, (), True, True),
        (SAPPHIRE_RAPIDS, ("FP32", "BF16", "FP16", "INT8"), True, True),
        (COOPER_LAKE, (), True, False),
        # OpenVINO's own report wins over the flags when it is known
        (COOPER_LAKE, ("FP32", "INT8"), False, False),
    ],
)
def test_bf16_is_detected_from_openvino_or_the_isa(cpuinfo, capabilities, bf16, amx) -> None:
    model, isa = parse_cpuinfo(cpuinfo)
    info = CpuInfo(model, 2, isa, openvino="2026.0", capabilities=capabilities)
    assert info.has_bf16 is bf16 and info.has_amx is amx
    assert (info.unavailable("bf16") == "") is bf16
    assert f"BF16 {'yes' if bf16 else 'no'}" in info.summary()
    for precision in ("fp32", "fp16", "int8"):
        assert info.unavailable(precision) == ""


def test_an_avx2_cpu_says_bf16_is_not_available() -> None:
    model, isa = parse_cpuinfo(AVX2)
    info = CpuInfo(model, 2, isa)
    assert info.unavailable("bf16") == (
        "bf16 not available on this CPU (no AVX512_BF16 or AMX-BF16)"
    )


def test_this_cpu_agrees_with_openvino() -> None:
    import openvino as ov

    native = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert cpu_info().has_bf16 is native
