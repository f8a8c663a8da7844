"""``make test``'s order (``tests/conftest.py``): files with a ``slow`` or ``browser`` test
first, each group by its files' number of tests, most first; each file's tests together and in
their order. Without the hook pytest keeps the files' order: a, b, c, d, e."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FILES = {
    "test_a_three.py": "def test_1(): pass\ndef test_2(): pass\ndef test_3(): pass\n",
    "test_b_one_slow.py": "import pytest\n\n@pytest.mark.slow\ndef test_1(): pass\n",
    "test_c_five.py": "".join(f"def test_{n}(): pass\n" for n in range(5, 0, -1)),
    "test_d_browser.py": "import pytest\n\npytestmark = pytest.mark.browser\n"
    "def test_1(): pass\ndef test_2(): pass\n",
    "test_e_one.py": "def test_1(): pass\n",
}


def test_files_with_slow_tests_run_first_then_the_largest(tmp_path: Path) -> None:
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import pytest_collection_modifyitems  # noqa: F401\n"
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow\n    browser\n")
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path, env={**_without_addopts(), "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert collected.returncode == 0, collected.stdout + collected.stderr
    assert [line for line in collected.stdout.splitlines() if "::" in line] == [
        "test_d_browser.py::test_1",
        "test_d_browser.py::test_2",
        "test_b_one_slow.py::test_1",
        *(f"test_c_five.py::test_{n}" for n in range(5, 0, -1)),
        "test_a_three.py::test_1",
        "test_a_three.py::test_2",
        "test_a_three.py::test_3",
        "test_e_one.py::test_1",
    ]


def _without_addopts() -> dict[str, str]:
    """This environment without ``PYTEST_ADDOPTS``: a ``-v`` given to the outer run would change
    the listing the inner one is read from."""
    return {name: value for name, value in os.environ.items() if name != "PYTEST_ADDOPTS"}
