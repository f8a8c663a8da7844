"""Check that files are decoded several at a time (``core.images.READERS``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def two_at_once(function: Callable[..., T]) -> Callable[..., T]:
    """``function`` whose first two calls each wait (up to 5 s) until the other has begun: a
    caller making them one after the other fails with ``threading.BrokenBarrierError``."""
    barrier, lock, calls = threading.Barrier(2, timeout=5), threading.Lock(), [0]

    def waiting(*args: Any, **kwargs: Any) -> T:
        with lock:
            calls[0] += 1
            first_two = calls[0] <= 2
        if first_two:
            barrier.wait()
        return function(*args, **kwargs)

    return waiting
