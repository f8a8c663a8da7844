"""Tests of the bench scripts: ``bench/`` holds scripts, not a package (``bench_module``)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench"


def bench_module(stem: str) -> ModuleType:
    """``bench/<stem>.py`` imported as its script runs: with ``bench/`` on ``sys.path`` while
    it loads, so its sibling imports (``_report``, ``real_data``) resolve."""
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module(stem)
    finally:
        sys.path.remove(str(BENCH))
