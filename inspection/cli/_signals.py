"""Long-running commands stop cleanly on SIGTERM (systemd) and SIGINT (Ctrl-C)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Terminated(KeyboardInterrupt):
    """SIGTERM as an exception: a one-shot command unwinds like on Ctrl-C."""


def stop_on_signals() -> threading.Event:
    """An event that SIGTERM or SIGINT sets; loops poll it and finish their current step."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Inside: SIGTERM raises ``Terminated``, so ``finally`` blocks and failure records run."""

    def _raise(signum: int, _frame: FrameType | None) -> None:
        raise Terminated(f"stopped by {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
