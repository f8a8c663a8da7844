"""The station side must never import torch: prove it in a fresh interpreter."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import inspection

TORCH_FREE_PACKAGES = (
    "core",
    "data",
    "runtime",
    "refine",
    "store",
    "station",
    "service",
    "line",
    "distribution",
    "dashboard",
)
# torch-free modules outside those packages (these commands run on machines without torch)
TORCH_FREE_MODULES = (
    "inspection.cli.data",
    "inspection.cli.inspect",
    "inspection.cli.serve",
    "inspection.cli.station",
    "inspection.cli.dashboard",
)
FORBIDDEN = ("torch", "anomalib", "lightning", "torchvision", "timm")


def _station_modules() -> list[str]:
    modules = list(TORCH_FREE_MODULES)
    for name in TORCH_FREE_PACKAGES:
        package = f"inspection.{name}"
        path = [f"{inspection.__path__[0]}/{name}"]
        modules.append(package)
        modules += [
            f"{package}.{m.name}" for m in pkgutil.walk_packages(path) if "migrations" not in m.name
        ]
    return modules


def test_station_modules_import_without_torch() -> None:
    modules = _station_modules()
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"bad = sorted(m for m in {FORBIDDEN!r} if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"station side imported {result.stdout.strip()}"
    assert len(modules) >= 6
