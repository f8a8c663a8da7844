"""Which precisions this CPU executes natively: bf16 is a candidate only where it exists."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from inspection.runtime.hardware import AVX2_ONLY, CpuInfo, cpu_info, forced_isa, parse_cpuinfo

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


KERNELS_IN_USE = """
import json
import cv2, numpy as np, openvino as ov, openvino.opset13 as ops, scipy.linalg, torch
from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
from threadpoolctl import threadpool_info

param = ops.parameter([1, 64, 32, 32], np.float32)
weights = ops.constant(np.ones((64, 64, 3, 3), np.float32))
conv = ov.Model([ops.convolution(param, weights, [1, 1], [1, 1], [1, 1], [1, 1])], [param])
compiled = ov.Core().compile_model(conv, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
torch.nn.functional.conv2d(torch.ones(1, 64, 32, 32), torch.ones(64, 64, 3, 3))  # oneDNN logs it
print(json.dumps({
    "numpy": sorted(t for t in __cpu_dispatch__ if __cpu_features__.get(t)),
    "opencv_avx512": [cv2.checkHardwareSupport(13), cv2.checkHardwareSupport(256)],  # F, SKX
    "openblas": sorted({i["architecture"] for i in threadpool_info() if i["internal_api"] == "openblas"}),
    "torch": torch.backends.cpu.get_cpu_capability(),
    "openvino": sorted({op.get_rt_info()["primitiveType"].astype(str) for op in compiled.get_runtime_model().get_ops()}),
}))
"""


def test_avx2_only_holds_each_library_to_its_avx2_kernels() -> None:
    """``AVX2_ONLY`` takes effect in every library it names that says which kernels it runs (a
    library renaming its switch would leave its AVX-512 kernels on, and a forced-AVX2 timing
    would read faster than it is): numpy's dispatch, OpenCV's, numpy's and scipy's OpenBLAS,
    torch's ATen and oneDNN (``ONEDNN_VERBOSE``), OpenVINO's convolution primitives (its
    oneDNN). MKL prints nothing to check it by. On an AVX2 CPU it holds as well."""
    env = {**os.environ, **AVX2_ONLY, "ONEDNN_VERBOSE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", KERNELS_IN_USE], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "unknown CPU feature" not in done.stderr, done.stderr  # OpenCV's word for a bad name
    used = json.loads(done.stdout.splitlines()[-1])
    assert not [t for t in used["numpy"] if "512" in t or t == "X86_V4"], used
    assert used["opencv_avx512"] == [False, False], used
    assert used["openblas"] == ["Haswell"] and used["torch"] == "AVX2", used
    assert not [p for p in used["openvino"] if "avx512" in p or "amx" in p], used
    assert any("avx2" in p for p in used["openvino"]), used
    convolutions = [line for line in done.stdout.splitlines() if ",exec,cpu,convolution," in line]
    assert convolutions and all("avx2" in line.split(",")[6] for line in convolutions), done.stdout


def test_forced_isa_names_the_variables_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in AVX2_ONLY:
        monkeypatch.delenv(name, raising=False)
    assert forced_isa() == ""
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    assert forced_isa() == "OPENBLAS_CORETYPE=Haswell"
    child = {"CI": "true", "OPENBLAS_CORETYPE": "Zen", "OPENCV_CPU_DISABLE": "AVX512F"}
    assert forced_isa(child) == "OPENBLAS_CORETYPE=Zen OPENCV_CPU_DISABLE=AVX512F"
