"""glibc's allocator, tuned for training: freed memory kept for the next allocation.

Training frees and reallocates blocks of the same few sizes; glibc's default ``mmap``s each
above a sliding threshold and returns it on free, so its pages fault in again. Pinning the
threshold at 32 MB and keeping up to 1 GB of freed heap spares that system time
(``reports/training/train_profile.md``). Stations never import it.
"""

from __future__ import annotations

import ctypes
import logging

logger = logging.getLogger(__name__)

# mallopt(3) parameters and the values set
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
SETTINGS = {
    M_MMAP_THRESHOLD: 32 * 2**20,  # glibc's ceiling: blocks up to 32 MB come from the heap
    M_TRIM_THRESHOLD: 2**30,  # free heap kept before any is returned to the kernel
    M_TOP_PAD: 256 * 2**20,  # the heap grows in 256 MB steps, not page by page
}


def reuse_freed_memory() -> bool:
    """Apply ``SETTINGS`` to this process's glibc allocator; False where there is none (another
    C library, another OS) or it refuses one, which leaves its defaults: only speed differs."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError, TypeError):
        return False
    applied = all(mallopt(parameter, value) == 1 for parameter, value in SETTINGS.items())
    if not applied:
        logger.debug("mallopt refused an allocator setting; glibc defaults kept")
    return applied
