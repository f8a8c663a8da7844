"""A per-product, cross-process, non-blocking lock: one retrain of a product at a time."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from inspection.core.errors import InspectionError
from inspection.core.model_record import check_name

log = logging.getLogger(__name__)


class RetrainBusy(InspectionError):
    """Another process is retraining this product; this run is skipped."""


def lock_path(registry_root: str | Path, product: str) -> Path:
    """``<registry>/.locks/retrain-<product>.lock``: beside the registry it protects."""
    return Path(registry_root) / ".locks" / f"retrain-{check_name('product', product)}.lock"


@contextmanager
def retrain_lock(registry_root: str | Path, product: str) -> Iterator[Path]:
    """Hold the product's retrain lock or raise ``RetrainBusy`` at once (never waits)."""
    path = lock_path(registry_root, product)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RetrainBusy(
            f"a retrain of {product!r} is already running (lock {path} is held); skipped"
        ) from None
    try:
        log.debug("holding %s", path)
        yield path
    finally:
        lock.release()
