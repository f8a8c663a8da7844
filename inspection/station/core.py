"""The station core wired once: store, live models (signatures, tuned precision), pipeline.

Every front door builds on ``StationCore.build``: the HTTP service and its watch folder
(``inspection.service.station``) and the PLC line station (``inspection.line.station``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from inspection.core.config import default_configs_dir
from inspection.core.input_domain import InputCheck
from inspection.core.registry import Registry
from inspection.core.signing import key_id
from inspection.refine.config import REFINE_CONFIG_NAME, RefineConfig, load_refine_config
from inspection.runtime.bounds import bounded_loader
from inspection.runtime.predictor import Predictor
from inspection.station.config import StationCoreConfig, check_registry_dir, pinned_key
from inspection.station.limits import ImageLimits
from inspection.station.live import (
    InspectorLoader,
    LiveModel,
    LiveModels,
    default_loader,
    station_loader,
)
from inspection.station.metrics import ForwardCollector
from inspection.station.pipeline import InputDomainHook, OutboxBuilder, Pipeline
from inspection.station.selection import TunedSelector
from inspection.store.forward import Forwarder, backlog, central_outbox
from inspection.store.store import Store

log = logging.getLogger(__name__)


@dataclass
class StationCore:
    """Store, live models and pipeline of one station; ``start()``/``stop()`` run the poller."""

    config: StationCoreConfig
    store: Store
    models: LiveModels
    pipeline: Pipeline
    key_id: str | None
    """The pinned site key's id; ``None`` when unsigned bundles are allowed."""
    forwarder: Forwarder | None = None
    """Forwards the committed results to ``config.central``; ``None`` without one."""

    @classmethod
    def build(
        cls,
        config: StationCoreConfig,
        *,
        loader: InspectorLoader = default_loader,
        store: Store | None = None,
        on_change: Callable[[LiveModel], None] | None = None,
        outbox: OutboxBuilder | None = None,
        on_input_domain: InputDomainHook | None = None,
        refine: RefineConfig | None = None,
        limits: ImageLimits | None = None,
    ) -> StationCore:
        """Open the store (schema brought up to date) and prepare the models, which load on
        ``start``; ``ConfigError`` first when ``registry_dir`` or the pinned key is unusable.
        ``outbox`` builds the sinks' messages committed with each result (the central store's
        follows); ``on_input_domain`` is told of each image outside its bundle's input domain;
        ``refine`` defaults to ``station_refine_config``, read here so a bad key stops the start;
        each bundle that goes live is held against ``limits`` (default: the config's image
        limits), a warning logged per limit below its training images."""
        check_registry_dir(config)
        public_key = pinned_key(config)
        if loader is default_loader:
            refine = refine if refine is not None else station_refine_config(config)
            loader = station_loader(
                refine, config.validation_images, public_key, config.inference_threads
            )
        store = store or Store.migrated(config.store_url, config.blob_dir)
        registry = Registry(config.registry_dir)
        models = LiveModels(
            registry,
            config.products,
            loader=bounded_loader(_checking(loader, config.input_check), config.bounds),
            on_change=_warning_of_limits(
                limits or ImageLimits(config.max_pixels, config.max_side), on_change
            ),
            selector=TunedSelector(
                registry, tune_on_load=config.tune_on_load, public_key=public_key
            ),
            public_key=public_key,
        )
        central, forwarder = config.central, None
        sinks = [] if outbox is None else [outbox]
        if central is not None:
            forwarder = Forwarder.from_config(store, central)
            sinks.append(central_outbox(store.blobs))
        pipeline = Pipeline(store, models, config, outbox=sinks, on_input_domain=on_input_domain)
        signer = None if public_key is None else key_id(public_key)
        return cls(config, store, models, pipeline, signer, forwarder)

    def start(self) -> None:
        """Load the live models now, then follow the registry and forward in the background."""
        self.models.start(self.config.registry_poll_seconds)
        if self.forwarder is not None:
            self.forwarder.start()

    def stop(self) -> None:
        self.models.stop()
        if self.forwarder is not None:
            self.forwarder.stop()

    def watch_forwarding(self, registry: CollectorRegistry) -> None:
        """Export the central backlog to ``registry`` when the station forwards."""
        if self.forwarder is not None and self.config.central is not None:
            alarm_s = self.config.central.alarm_after_seconds
            registry.register(ForwardCollector(self.forwarder, alarm_s))

    def central_status(self) -> dict[str, Any] | None:
        """The central backlog (``store.forward.Backlog``) and its alarm; ``None`` without a
        central store."""
        if self.config.central is None:
            return None
        waiting = backlog(self.store)
        alarm = waiting.alarm(self.config.central.alarm_after_seconds)
        return dataclasses.asdict(waiting) | {"alarm": alarm}

    def signatures(self) -> dict[str, Any]:
        """What the status pages show about bundle signatures."""
        return {
            "required": self.key_id is not None,
            "pinned_key_id": self.key_id,
            "pinned": [f"{p.signs} {p.fingerprint}" for p in self.config.signing_keys],
            "revoked": list(self.config.revoked),
        }


def station_refine_config(config: StationCoreConfig) -> RefineConfig:
    """The station's mask-refiner settings: ``refine.yaml`` of its configs folder, else of the
    default configs, else the defaults; the log names the file (``ConfigError``: a bad key)."""
    own = config.configs / REFINE_CONFIG_NAME
    fallback = default_configs_dir() / REFINE_CONFIG_NAME
    if own.is_file():
        path = own
        why = "the station's configs" if config.configs_dir else "no station config file"
    elif fallback.is_file():
        path, why = fallback, f"none in the station's configs folder {own.parent.resolve()}"
    else:
        log.info(
            "refine config: the defaults (no %s in %s)", REFINE_CONFIG_NAME, own.parent.resolve()
        )
        return RefineConfig()
    refine = load_refine_config(path)
    log.info("refine config: %s (%s)", path.resolve(), why)
    return refine


def _checking(loader: InspectorLoader, input_check: InputCheck) -> InspectorLoader:
    """``loader`` whose inspectors hold images to their bundle's input domain as ``input_check``
    says."""

    def load(bundle_dir: Path) -> Predictor:
        inspector = loader(bundle_dir)
        inspector.input_check = input_check
        return inspector

    return load


def _warning_of_limits(
    limits: ImageLimits, on_change: Callable[[LiveModel], None] | None
) -> Callable[[LiveModel], None]:
    """``on_change``, first logging once per bundle each of ``limits`` below the images the
    bundle was trained on (``ImageLimits.below``)."""
    warned: set[tuple[str, str]] = set()

    def changed(model: LiveModel) -> None:
        if (model.product, model.served_bundle_id) not in warned:
            warned.add((model.product, model.served_bundle_id))
            for line in limits.below(model.inspector.metadata.input_domain):
                log.warning("%s: bundle %s: %s", model.product, model.served_bundle_id, line)
        if on_change is not None:
            on_change(model)

    return changed
