"""The project's scripts loaded as modules: the dashboard tests share their code."""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


@functools.cache
def load_script(stem: str) -> ModuleType:
    """``scripts/<stem>.py`` as the module ``<stem>`` (loaded once)."""
    spec = importlib.util.spec_from_file_location(stem, REPO / "scripts" / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[stem] = module
    spec.loader.exec_module(module)
    return module


def walk_module() -> ModuleType:
    """``scripts/dashboard_walk.py``: the first-use walk and its page waits."""
    return load_script("dashboard_walk")
