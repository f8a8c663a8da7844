"""The HTTP station: the station core plus its HTTP metrics, worker pool and watch folder."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from inspection.service.config import StationConfig
from inspection.service.watch import FileOutcome, WatchFolder
from inspection.station.core import StationCore
from inspection.station.limits import ImageLimits
from inspection.station.live import InspectorLoader, LiveModels, default_loader
from inspection.station.metrics import ServiceMetrics
from inspection.station.pipeline import Outcome, Pipeline
from inspection.store.store import Store


@dataclass
class Station:
    """Built once per process by ``Station.build``; ``start()``/``stop()`` run the background parts."""

    config: StationConfig
    core: StationCore
    metrics: ServiceMetrics
    watcher: WatchFolder | None = None
    executor: ThreadPoolExecutor | None = None

    @classmethod
    def build(
        cls,
        config: StationConfig,
        *,
        loader: InspectorLoader = default_loader,
        store: Store | None = None,
        with_watch: bool | None = None,
    ) -> Station:
        """Open the store (bringing its schema up to date) and prepare models; nothing loads until ``start``."""
        metrics = ServiceMetrics()
        core = StationCore.build(
            config.core,
            loader=loader,
            store=store,
            on_change=metrics.model_changed,
            on_input_domain=metrics.stages.count_input_domain,
            limits=ImageLimits(
                config.core.max_pixels, config.core.max_side, config.max_upload_bytes
            ),
        )
        metrics.watch_golden(core.models)
        core.watch_forwarding(metrics.registry)
        station = cls(config, core, metrics)
        if config.watch.enabled if with_watch is None else with_watch:
            station.watcher = WatchFolder(config.watch, core.pipeline, on_file=station._watched)
        return station

    @property
    def store(self) -> Store:
        return self.core.store

    @property
    def models(self) -> LiveModels:
        return self.core.models

    @property
    def pipeline(self) -> Pipeline:
        return self.core.pipeline

    def start(self) -> None:
        """Load the live models, start the registry poller, the worker pool and the watcher."""
        self.executor = ThreadPoolExecutor(self.config.workers, thread_name_prefix="inspect")
        self.core.start()
        if self.watcher is not None:
            self.watcher.start()

    def stop(self) -> None:
        """Finish in-flight work, then stop the background threads."""
        if self.watcher is not None:
            self.watcher.stop()
        self.core.stop()
        if self.executor is not None:
            self.executor.shutdown(wait=True)
            self.executor = None

    def observe(self, outcome: Outcome) -> None:
        """Count a stored result (replays are not counted twice)."""
        if not outcome.created:
            return
        row = outcome.row
        self.metrics.verdicts.labels(row.product, row.verdict, row.source).inc()
        self.metrics.inference_latency.labels(row.product).observe(row.latency_ms / 1000.0)
        self.metrics.stages.observe(row.product, outcome.timings_ms)

    def watch_status(self) -> dict[str, Any] | None:
        if self.watcher is None:
            return None
        return {"root": str(self.config.watch.root), "files": dict(self.watcher.counts)}

    def _watched(self, result: FileOutcome, outcome: Outcome | None) -> None:
        self.metrics.watch_files.labels(result.status).inc()
        if outcome is not None:
            self.observe(outcome)
