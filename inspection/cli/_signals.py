"""Long-running commands stop cleanly on SIGTERM (systemd) and SIGINT (Ctrl-C)."""

from __future__ import annotations

import signal
import threading


def stop_on_signals() -> threading.Event:
    """An event that SIGTERM or SIGINT sets; loops poll it and finish their current step."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop
