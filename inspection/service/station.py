"""A station's moving parts wired together: store, live models, pipeline, metrics, watcher."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from inspection.core.registry import Registry
from inspection.runtime.camera import bounded_loader
from inspection.service.config import StationConfig, pinned_key
from inspection.service.live import InspectorLoader, LiveModels, TunedSelector, default_loader
from inspection.service.metrics import ServiceMetrics
from inspection.service.pipeline import Outcome, Pipeline
from inspection.service.watch import FileOutcome, WatchFolder
from inspection.store.store import Store

log = logging.getLogger(__name__)


@dataclass
class Station:
    """Built once per process by ``Station.build``; ``start()``/``stop()`` run the background parts."""

    config: StationConfig
    store: Store
    models: LiveModels
    pipeline: Pipeline
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
        store = store or Store.migrated(config.store_url, config.blob_dir)
        registry = Registry(config.registry_dir)
        public_key = pinned_key(config)
        models = LiveModels(
            registry,
            config.products,
            loader=bounded_loader(loader, config.camera),
            on_change=metrics.model_changed,
            selector=TunedSelector(
                registry, tune_on_load=config.tune_on_load, public_key=public_key
            ),
            public_key=public_key,
        )
        pipeline = Pipeline(
            store,
            models,
            max_pixels=config.max_pixels,
            max_side=config.max_side,
            formats=config.image_formats,
            camera=config.camera,
        )
        station = cls(config, store, models, pipeline, metrics)
        if config.watch.enabled if with_watch is None else with_watch:
            station.watcher = WatchFolder(config.watch, pipeline, on_file=station._watched)
        return station

    def start(self) -> None:
        """Load the live models, start the registry poller, the worker pool and the watcher."""
        self.executor = ThreadPoolExecutor(self.config.workers, thread_name_prefix="inspect")
        self.models.start(self.config.registry_poll_seconds)
        if self.watcher is not None:
            self.watcher.start()

    def stop(self) -> None:
        """Finish in-flight work, then stop the background threads."""
        if self.watcher is not None:
            self.watcher.stop()
        self.models.stop()
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
