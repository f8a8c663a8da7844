"""One way to run a loop in the background (the station's pollers): a named daemon thread,
stopped through an event."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Background:
    """Runs ``target`` in a daemon thread called ``name`` from ``start()`` until ``stop()``;
    ``target`` loops until ``stopping`` is set (waiting on it, so a stop ends a sleep)."""

    def __init__(self, name: str, target: Callable[[], None], *, join_s: float = 30.0) -> None:
        self.name = name
        self.stopping = threading.Event()
        self._target = target
        self._join_s = join_s
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (nothing when it runs already)."""
        if self._thread is not None:
            return
        self.stopping.clear()
        self._thread = threading.Thread(target=self._target, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Set ``stopping`` and wait up to ``join_s`` seconds for the thread to end."""
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self._join_s)
            self._thread = None

    def every(self, interval_s: float, step: Callable[[], None]) -> None:
        """A loop for ``target``: ``step()`` every ``interval_s`` seconds until ``stop()``."""
        while not self.stopping.wait(interval_s):
            step()
