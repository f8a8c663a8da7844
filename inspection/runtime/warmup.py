"""Warm-on-trigger: one throw-away inference started when the line's trigger arrives.

On a slow line idle cores let the next inference start cold; the trigger comes before the
image, so one inference of a blank input runs in that gap, on the part's own infer request
(its buffers warm too). The part's inference cancels it if still running.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import openvino as ov

WarmOutcome = Literal["started", "recent", "busy", "disabled"]
RUN_MS_WEIGHT = 0.2
"""Weight of the newest finished warm run in ``WarmStats.run_ms``."""


@dataclass
class WarmStats:
    """Counts since load: warm runs started, finished before the part came, cancelled by it."""

    started: int = 0
    finished: int = 0
    cancelled: int = 0
    run_ms: float | None = None
    """Running mean of a warm run's duration (a cancelled one's time: a lower bound)."""

    def time_run(self, ms: float, *, lower_bound: bool = False) -> None:
        if self.run_ms is None:
            self.run_ms = ms
        elif lower_bound:
            self.run_ms = max(self.run_ms, ms)
        else:
            self.run_ms += RUN_MS_WEIGHT * (ms - self.run_ms)


class WarmRequest:
    """Warm runs on the parts' infer request (``BundleModel`` calls it under its lock)."""

    def __init__(self, request: ov.InferRequest, blank: np.ndarray) -> None:
        """``blank``: the input a warm run infers (a blank image as the model takes it)."""
        self._request = request
        self._input = blank
        self._running = False
        self._started_at = 0.0
        self.last_end = 0.0
        """``perf_counter`` time the last real inference ended (0: never)."""
        self.stats = WarmStats()

    def start(self, idle_ms: float) -> WarmOutcome:
        if self._running and not self._done():
            return "busy"
        self._settle()
        if self.last_end and (time.perf_counter() - self.last_end) * 1e3 < idle_ms:
            return "recent"
        self._request.start_async({0: self._input}, share_inputs=True)
        self._running = True
        self._started_at = time.perf_counter()
        self.stats.started += 1
        return "started"

    def stop(self) -> None:
        """Before a real inference: cancel a warm run still in flight and wait for it."""
        if not self._running:
            return
        if self._done():
            self._settle()
            return
        started = time.perf_counter()
        self._request.cancel()
        with contextlib.suppress(RuntimeError):  # OpenVINO reports a cancelled run so
            self._request.wait()
        self._running = False
        self.stats.cancelled += 1
        self.stats.time_run((started - self._started_at) * 1e3, lower_bound=True)

    def _done(self) -> bool:
        return self._request.wait_for(0)

    def _settle(self) -> None:
        if self._running:
            self._running = False
            self.stats.finished += 1
            self.stats.time_run(self._request.latency)  # the request's last run: the warm one
