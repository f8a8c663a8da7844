"""The training side keeps freed memory for reuse: a freed block's pages are not faulted in again."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Allocate, fill and free one 16 MB block five times; print the page faults of rounds 2-5.
CHURN = """
import ctypes, resource, sys
if sys.argv[1] == "tuned":
    import inspection.training
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
size, faults = 16 * 2**20, []
for _ in range(5):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(ctypes.c_void_p(block))
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sum(faults[1:]))
"""


def _refaults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_importing_the_training_side_stops_refaulting_freed_blocks() -> None:
    pages = 16 * 2**20 // 4096
    assert _refaults("default") >= pages // 2  # glibc's default: a block is faulted in twice
    assert _refaults("tuned") < pages // 16  # kept and reused: each page faulted once


def test_the_settings_are_accepted() -> None:
    from inspection.training.allocator import reuse_freed_memory

    assert reuse_freed_memory() is sys.platform.startswith("linux")
