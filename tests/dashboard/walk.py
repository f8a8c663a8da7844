"""``scripts/dashboard_walk.py`` loaded as a module: the browser tests share its waits."""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


@functools.cache
def walk_module() -> ModuleType:
    """The walk script as the module ``dashboard_walk`` (loaded once)."""
    spec = importlib.util.spec_from_file_location(
        "dashboard_walk", REPO / "scripts" / "dashboard_walk.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["dashboard_walk"] = module
    spec.loader.exec_module(module)
    return module
