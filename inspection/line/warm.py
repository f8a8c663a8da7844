"""Warm-on-trigger at the line station: when, on each trigger, to start the warm run.

A warm run (``runtime.warmup``) started at the trigger wakes OpenVINO's threads while the
camera exposes; ended too early, the cores fall asleep again. ``timing: learned`` delays it to
end ``margin_ms`` before the part's inference is due, from running means of the line's
trigger-to-inference lead and of the warm run's own time; ``trigger`` starts it at once. The
part's inference cancels a warm run still in flight.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

from inspection.line.config import WarmConfig

EMA_WEIGHT = 0.2
"""Weight of the newest part in the running means."""

WarmHook = Callable[[str, str], None]
"""Called with (product, outcome) after each trigger's warm-up decision (metrics)."""


@runtime_checkable
class Warmable(Protocol):
    """An inspector that can warm its cores on the trigger (``Inspector.warm``)."""

    def warm(self, idle_ms: float) -> str: ...

    @property
    def warm_run_ms(self) -> float | None: ...


class TriggerWarmer:
    """Starts (or schedules) the warm run of each trigger; thread-safe."""

    def __init__(self, config: WarmConfig, on_warm: WarmHook | None = None) -> None:
        self.config = config
        self._on_warm = on_warm
        self._lock = threading.Lock()
        self._lead_ms: dict[str, float] = {}
        self._infer_ms: dict[str, float] = {}

    def on_trigger(self, product: str, inspector: object) -> None:
        """Start the warm run now or schedule it (returns at once)."""
        if not self.config.enabled:
            self._report(product, "disabled")
            return
        if not isinstance(inspector, Warmable):  # e.g. tiled: tiles run as batches
            self._report(product, "unsupported")
            return
        delay_s = self.delay_ms(product, inspector.warm_run_ms) / 1e3
        if delay_s <= 0:
            self._warm(product, inspector)
            return
        timer = threading.Timer(delay_s, self._warm, (product, inspector))
        timer.daemon = True
        timer.start()

    def delay_ms(self, product: str, warm_run_ms: float | None = None) -> float:
        """How long after the trigger to start the warm run (0 with ``timing: trigger`` or before
        ``product`` was timed); ``warm_run_ms``: the inspector's mean warm run (None: its inference)."""
        if self.config.timing != "learned":
            return 0.0
        with self._lock:
            lead, infer = self._lead_ms.get(product), self._infer_ms.get(product)
        run = warm_run_ms if warm_run_ms is not None else infer
        if lead is None or run is None:
            return 0.0
        return max(0.0, lead - run - self.config.margin_ms)

    def learn(self, product: str, capture_ms: float, stages_ms: Mapping[str, float]) -> None:
        """Update the running means with one inspected part's stage times."""
        if "infer" not in stages_ms:
            return
        lead = capture_ms + stages_ms.get("decode", 0.0) + stages_ms.get("preprocess", 0.0)
        with self._lock:
            for means, value in ((self._lead_ms, lead), (self._infer_ms, stages_ms["infer"])):
                old = means.get(product)
                means[product] = value if old is None else old + EMA_WEIGHT * (value - old)

    def _warm(self, product: str, inspector: Warmable) -> None:
        self._report(product, inspector.warm(self.config.idle_ms))

    def _report(self, product: str, outcome: str) -> None:
        if self._on_warm is not None:
            self._on_warm(product, outcome)
