"""What this CPU can do for inference: model, ISA flags, OpenVINO's own capability report
(``/proc/cpuinfo`` and OpenVINO's CPU plugin). ``cpu_info().key`` names a station's records."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from inspection.core.model_record import check_name

# The instruction sets that decide whether INT8/BF16 pays: VNNI makes INT8 dot products one
# instruction; AMX adds tile matrix units. Without them INT8 convolutions are emulated with
# AVX2 multiply-adds plus (de)quantisation and are often slower than FP32.
ISA_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)

AVX2_ONLY = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN: torch's convolutions and OpenVINO's CPU plugin
    "ATEN_CPU_CAPABILITY": "avx2",  # torch's own kernels
    "OV_CPU_MAX_ISA": "AVX2",  # OpenVINO's own switch: honoured by its debug builds only
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",  # torch's MKL
    "OPENBLAS_CORETYPE": "Haswell",  # numpy's and scipy's OpenBLAS: AVX2 kernels
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",  # numpy's AVX-512 loops
    "OPENCV_CPU_DISABLE": "AVX512F,AVX512-SKX,AVX512-COMMON",  # OpenCV's AVX-512 dispatch
}
"""The environment that holds every library the product runs to its AVX2 kernels on an AVX-512
CPU (each library's own switch; numpy's names are numpy >= 2.4's), to time an AVX2 line PC's
instruction set there. Not an AVX2 CPU: its cores, caches and clocks stay the AVX-512 machine's.
On an AVX2 CPU it changes nothing."""


def forced_isa(env: Mapping[str, str] | None = None) -> str:
    """``AVX2_ONLY``'s variables set in ``env`` (default: this process's environment), as
    ``NAME=value`` words."""
    env = os.environ if env is None else env
    return " ".join(f"{k}={env[k]}" for k in AVX2_ONLY if k in env)


@dataclass(frozen=True)
class CpuInfo:
    """The inference-relevant facts of one CPU."""

    model: str
    cores: int
    isa: tuple[str, ...]
    """The flags of ``ISA_FLAGS`` this CPU reports, in that order."""
    openvino: str = ""
    """OpenVINO version the capabilities came from ("" when OpenVINO is not installed)."""
    capabilities: tuple[str, ...] = ()
    """``core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")``, e.g. FP32, FP16, INT8, BIN."""

    @property
    def has_vnni(self) -> bool:
        return any(flag in self.isa for flag in ("avx512_vnni", "avx_vnni", "amx_int8"))

    @property
    def has_amx(self) -> bool:
        return "amx_tile" in self.isa

    @property
    def has_bf16(self) -> bool:
        """OpenVINO runs bf16 natively here (else a bf16 hint silently runs f32)."""
        if self.capabilities:
            return "BF16" in self.capabilities
        return any(flag in self.isa for flag in ("avx512_bf16", "amx_bf16"))

    def unavailable(self, precision: str) -> str:
        """Why ``precision`` (a bundle precision) cannot run natively here ('' when it can)."""
        if precision == "bf16" and not self.has_bf16:
            return "bf16 not available on this CPU (no AVX512_BF16 or AMX-BF16)"
        return ""

    @property
    def key(self) -> str:
        """A file-name-safe id: same CPU model, cores and ISA -> same key."""
        slug = re.sub(r"[^a-z0-9]+", "-", self.model.lower()).strip("-")[:40] or "cpu"
        digest = hashlib.sha256(f"{self.model}|{self.cores}|{','.join(self.isa)}".encode())
        return f"{slug}-{self.cores}c-{digest.hexdigest()[:8]}"

    def summary(self) -> str:
        """One line for reports: model, cores, ISA, VNNI/AMX."""
        flags = {"VNNI": self.has_vnni, "BF16": self.has_bf16, "AMX": self.has_amx}
        extras = ", ".join(f"{name} {'yes' if on else 'no'}" for name, on in flags.items())
        return f"{self.model}, {self.cores} cores, ISA {' '.join(self.isa) or '-'} ({extras})"


def parse_cpuinfo(text: str) -> tuple[str, tuple[str, ...]]:
    """``/proc/cpuinfo`` text -> (model name, ISA flags of ``ISA_FLAGS`` present)."""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return model, tuple(flag for flag in ISA_FLAGS if flag in flags)


def openvino_capabilities() -> tuple[str, tuple[str, ...]]:
    """(OpenVINO version, CPU optimisation capabilities); ("", ()) without OpenVINO."""
    try:
        # deferred: OpenVINO (0.3 s) is optional here: the dashboard and data tools report the CPU
        import openvino as ov
    except ImportError:
        return "", ()
    core = ov.Core()
    capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return ov.get_version(), tuple(str(c) for c in capabilities)


@lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    cpuinfo = Path("/proc/cpuinfo")
    model, isa = parse_cpuinfo(cpuinfo.read_text()) if cpuinfo.is_file() else ("", ())
    version, capabilities = openvino_capabilities()
    return CpuInfo(
        model=model or platform.processor() or platform.machine(),
        cores=os.cpu_count() or 1,
        isa=isa,
        openvino=version,
        capabilities=capabilities,
    )


def load_1m() -> float:
    """The 1-minute load average (other jobs skew every timing: record it next to figures)."""
    return round(os.getloadavg()[0], 2)


def cpu_record_path(root: Path, product: str, kind: str, cpu: CpuInfo | None = None) -> Path:
    """``<registry root>/<product>/<kind>/<cpu key>.json``: a station's record per CPU."""
    return root / check_name("product", product) / kind / f"{(cpu or cpu_info()).key}.json"


def read_cpu_records(root: Path, product: str, kind: str) -> list[tuple[Path, object]]:
    """Every CPU's readable ``kind`` record of ``product`` as (file, JSON), sorted by file."""
    folder = root / check_name("product", product) / kind
    records = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            records.append((path, json.loads(path.read_text(encoding="utf-8"))))
        except (ValueError, OSError):
            continue
    return records
