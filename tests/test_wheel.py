"""The wheel a central host installs carries the dashboard app that ``inspection dashboard`` runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "inspection", "apps")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built from a copy of its sources (the checkout stays untouched)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    source.mkdir()
    for name in SOURCES:
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        copy(REPO / name, source / name, **_no_caches(REPO / name))
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*command, "-w", str(root / "dist"), str(source)], check=True, timeout=300)
    (built,) = (root / "dist").glob("inspection-*.whl")
    return built


def _no_caches(path: Path) -> dict:
    return {"ignore": shutil.ignore_patterns("__pycache__")} if path.is_dir() else {}


@pytest.mark.slow
def test_wheel_carries_the_dashboard_app(wheel: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path)
    pages = {f"apps/dashboard/views/{p.name}" for p in (REPO / "apps/dashboard/views").glob("*.py")}
    assert {"apps/dashboard/app.py", "apps/dashboard/asgi.py", *pages} <= names
    found = subprocess.run(  # the installed command finds the app beside the package
        [sys.executable, "-c", "from inspection.cli.dashboard import APP; print(APP)"],
        env={"PYTHONPATH": str(tmp_path), "PATH": ""},
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )  # fmt: skip
    assert Path(found.stdout.strip()) == tmp_path / "apps/dashboard/asgi.py"
