"""Drains the outbox into the sinks: at least once, in order per sink, with backoff. A failed
delivery holds its message back and pauses its sink for the same time, so a dead broker costs
one attempt per backoff step, not one per message; ``wake()`` after a commit delivers at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from functools import partial

from sqlalchemy.exc import SQLAlchemyError

from inspection.core.background import Background
from inspection.line.config import PublisherConfig
from inspection.line.sinks import DeliveryError, Sink
from inspection.station.metrics import OutboxMetrics
from inspection.store.outbox import Outbox, PendingMessage, backoff_s

log = logging.getLogger(__name__)


class Publisher:
    """Delivers outbox messages to ``sinks`` (by name) from a daemon thread."""

    def __init__(
        self,
        outbox: Outbox,
        sinks: Mapping[str, Sink],
        config: PublisherConfig,
        *,
        metrics: OutboxMetrics | None = None,
    ) -> None:
        self.outbox, self.sinks, self.config = outbox, dict(sinks), config
        self.metrics = metrics or OutboxMetrics()
        self._wake = threading.Event()
        self._paused_until: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._worker = Background("outbox-publisher", self._run, join_s=10.0)
        self._last_backlog = 0.0
        for name, sink in self.sinks.items():
            sink.on_acknowledged = partial(self._acknowledged, name)

    def _acknowledged(self, sink: str, key: str) -> None:
        """``sink`` had ``key`` acknowledged outside ``deliver``'s return (MQTT: paho's thread,
        at the PUBACK): mark it at once, so a station killed now does not send it again."""
        try:
            self.outbox.acknowledged(sink, key)
        except SQLAlchemyError as exc:  # store briefly unavailable: marked as delivery returns
            log.warning(
                "%s: marking %s delivered at its acknowledgement failed: %s", sink, key, exc
            )

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        self._wake.set()  # ends an idle wait; the loop then sees ``stopping``
        self._worker.stop()

    def close(self) -> None:
        """Stop the thread, then try what is due once more (a station's graceful stop). In this
        order a message the thread is still delivering is never sent a second time beside it."""
        self.stop()
        self.drain_once()

    def wake(self) -> None:
        """A message was committed: look at the outbox now."""
        self._wake.set()

    def drain_once(self) -> int:
        """Try every due message of every sink that is not paused once; returns deliveries."""
        now = time.monotonic()
        ready = [name for name in self.sinks if self._paused_until.get(name, 0.0) <= now]
        delivered = 0
        for message in self.outbox.due(ready, limit=self.config.batch):
            if self._paused_until.get(message.sink, 0.0) > time.monotonic():
                continue  # this sink failed earlier in the batch
            delivered += self._deliver(message)
        return delivered

    def _deliver(self, message: PendingMessage) -> int:
        sink = self.sinks[message.sink]
        try:
            sink.deliver(message.key, message.payload)
        except DeliveryError as exc:
            failures = self._failures.get(message.sink, 0) + 1
            self._failures[message.sink] = failures
            delay = backoff_s(max(failures, message.attempts + 1), self.config)
            self._paused_until[message.sink] = time.monotonic() + delay
            self.outbox.failed(message.id, str(exc), delay)
            self.metrics.failures.labels(message.sink).inc()
            log.warning("%s (retry in %.1f s)", exc, delay)
            return 0
        at = datetime.now(timezone.utc)
        self.outbox.delivered(message.id, at)
        self._failures.pop(message.sink, None)
        self.metrics.latency.labels(message.sink).observe((at - message.created_at).total_seconds())
        return 1

    def update_backlog(self) -> None:
        backlog = self.outbox.backlog()
        for name in self.sinks:
            entry = backlog.get(name)
            self.metrics.backlog.labels(name).set(entry.pending if entry else 0)
            self.metrics.oldest.labels(name).set((entry.oldest_age_s or 0.0) if entry else 0.0)

    def _run(self) -> None:
        while not self._worker.stopping.is_set():
            self._wake.clear()
            try:
                delivered = self.drain_once()
                if time.monotonic() - self._last_backlog > 1.0:
                    self.update_backlog()
                    self._last_backlog = time.monotonic()
            except Exception:  # the store may be briefly unavailable: keep the thread alive
                log.exception("outbox publisher: draining failed")
                delivered = 0
            if delivered == 0:
                self._wake.wait(self._idle_wait())

    def _idle_wait(self) -> float:
        now = time.monotonic()
        waits = [until - now for until in self._paused_until.values() if until > now]
        return max(0.01, min([self.config.poll_s, *waits]))
