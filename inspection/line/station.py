"""A line station wired together: camera -> inspect -> store (+ outbox) -> sinks, driven by
the PLC over its links (``links.LINKS``): ``inspection station run --config configs/line.yaml``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from inspection.core.errors import ConfigError
from inspection.line.camera import Camera, FileSequenceCamera, open_camera
from inspection.line.config import LineConfig
from inspection.line.handshake import Answer, ErrorCode, LinkContext, TriggerHandler, View
from inspection.line.links import Link, link_kind
from inspection.line.payload import SIGNED_RECORD, payload_of
from inspection.line.pki import LinePki
from inspection.line.publisher import Publisher
from inspection.line.security import insecure_notice
from inspection.line.sinks import Sink, build_sink
from inspection.station.core import StationCore
from inspection.station.live import InspectorLoader, default_loader
from inspection.station.metrics import HandshakeMetrics, OutboxMetrics
from inspection.station.pipeline import OutboxBuilder
from inspection.station.stages import input_domain_counter
from inspection.store.models import OutboxEntry
from inspection.store.outbox import Outbox

log = logging.getLogger(__name__)


def outbox_builder(config: LineConfig) -> OutboxBuilder:
    """One outbox message per configured sink, all carrying the same ``inspection.result/1``,
    signed with the station's key unless link security is off; its ``SIGNED_RECORD`` too when
    a served link reads it (``LinkKind.reads_payloads``)."""
    security = config.security
    key = LinePki(security.pki_dir).signing_key(config.station_id) if security.on else None
    served = [link_kind(name) for name, section in config.links.items() if section.enabled]
    records = [SIGNED_RECORD] if any(kind.reads_payloads for kind in served) else []

    def build(fields: Mapping[str, Any], timings: Mapping[str, float]) -> Sequence[OutboxEntry]:
        payload = payload_of(fields, timings_ms=timings, image_base_url=config.image_base_url)
        if key is not None:
            payload = payload.signed(key)
        text = payload.to_json()
        kept = [OutboxEntry(name, payload.request_id, text, delivered=True) for name in records]
        return kept + [OutboxEntry(sink.name, payload.request_id, text) for sink in config.sinks]

    return build


@dataclass
class LineStation:
    """Built by ``LineStation.build``; ``start()`` / ``stop()`` run every background part."""

    config: LineConfig
    core: StationCore
    handler: TriggerHandler
    publisher: Publisher
    sinks: dict[str, Sink]
    metrics: HandshakeMetrics
    registry: CollectorRegistry
    links: dict[str, Link] = field(default_factory=dict)
    """The PLC links served, by name (``links.LINKS``)."""

    @classmethod
    def build(cls, config: LineConfig, *, loader: InspectorLoader = default_loader) -> LineStation:
        """Open the store (upgrading its schema), cameras, sinks and links; models load on
        ``start``. The metrics count triggers, warm runs, the outbox and refused images."""
        registry = CollectorRegistry()
        metrics = HandshakeMetrics(registry)
        Gauge(
            "inspection_line_insecure",
            "1 when the line links run without security",
            registry=registry,
        ).set(0 if config.security.on else 1)
        input_domain = input_domain_counter(registry)  # as the HTTP station counts them
        core = StationCore.build(
            config.core,
            loader=loader,
            outbox=outbox_builder(config),
            on_input_domain=lambda product, outcome: input_domain.labels(product, outcome).inc(),
        )
        core.watch_forwarding(registry)
        handler = TriggerHandler(
            open_views(config),
            core.pipeline,
            station_id=config.station_id,
            product=config.product,
            timeout_s=config.inspect_timeout_s,
            warm=config.warm_on_trigger,
            on_warm=lambda product, outcome: metrics.warmups.labels(product, outcome).inc(),
        )
        sinks = {
            s.name: build_sink(s, station_id=config.station_id, security=config.security)
            for s in config.sinks
        }
        publisher = Publisher(
            Outbox(core.store), sinks, config.publisher, metrics=OutboxMetrics(registry)
        )
        station = cls(config, core, handler, publisher, sinks, metrics, registry)
        serving = LinkContext(
            handler, config.station_id, config.security, core.store, station.counted
        )
        station.links = {
            name: link_kind(name).load("serve")(section, serving)
            for name, section in config.links.items()
            if section.enabled
        }
        return station

    def start(self) -> None:
        """Load live models, then serve (publisher, links, metrics endpoint), warning of what would
        refuse every trigger (``startup_warnings``)."""
        if self.config.metrics_port is not None:  # first: a busy port stops nothing running
            serve_metrics(self.config.metrics_port, self.registry)
        self.core.start()
        for warning in self.startup_warnings():
            log.warning(warning)
        self.publisher.start()
        for link in self.links.values():
            link.start()

    def startup_warnings(self) -> list[str]:
        """What a commissioning engineer must see at start: links without security, products without
        a usable live model (NO_MODEL), an empty file camera (NO_IMAGE)."""
        notice = insecure_notice(self.config.security)
        warnings = [notice] if notice else []
        warnings += [
            f"product {product!r}: no live model ({state['problem']}); its triggers are "
            "answered NO_MODEL"
            for product, state in self.core.models.status().items()
            if not state["loaded"]
        ]
        warnings += [
            f"file camera{f' of view {view.name!r}' if view.name else ''}: no images under "
            f"{view.camera.folder}; every trigger is answered NO_IMAGE"
            for view in self.handler.views
            if isinstance(view.camera, FileSequenceCamera) and not view.camera.files
        ]
        return warnings

    def status(self) -> dict[str, Any]:
        """Live models per product, the signature policy (the pinned key's id) and the line
        links' security (``insecure`` carries the start-up announcement when off)."""
        security = self.config.security
        links = {"mode": security.mode, "insecure": insecure_notice(security)}
        return {
            "products": self.core.models.status(),
            "signatures": self.core.signatures(),
            "link_security": links,
        }

    def stop(self) -> None:
        """Stop taking triggers, finish in-flight work, flush what the sinks take now."""
        for link in self.links.values():
            link.stop()
        self.handler.close()
        self.publisher.close()
        for sink in self.sinks.values():
            sink.close()
        self.core.stop()
        self.core.store.engine.dispose()

    @property
    def camera(self) -> Camera:
        """The camera of a station without views (the first view's otherwise)."""
        return self.handler.views[0].camera

    def answered(self, answer: Answer, seconds: float, via: str) -> None:
        """Count the answer and let the publisher deliver its outbox rows right away."""
        result = answer.verdict or ErrorCode(answer.error_code).name
        self.metrics.triggers.labels(via, result).inc()
        self.metrics.latency.labels(via).observe(seconds)
        self.publisher.wake()

    def counted(self, via: str) -> Callable[[Answer, float], None]:
        """The ``on_answer`` of the handshake ``via`` (``answered``)."""
        return partial(self.answered, via=via)


def open_views(config: LineConfig) -> list[View]:
    """The configured views, each with its camera opened; one unnamed view for ``camera``."""
    if config.camera is not None:
        return [View("", open_camera(config.camera))]
    views: list[View] = []
    try:
        for view in config.views:
            views.append(View(view.name, open_camera(view.camera), view.product))
    except Exception:  # a camera that does not open: close those opened before it
        for opened in views:
            opened.camera.close()
        raise
    return views


def serve_metrics(port: int, registry: CollectorRegistry) -> None:
    """Serve ``registry`` on 127.0.0.1:``port``; a port it cannot bind is a ``ConfigError``."""
    try:
        start_http_server(port, "127.0.0.1", registry=registry)
    except OSError as exc:
        raise ConfigError(
            f"line config: metrics_port {port}: cannot listen on 127.0.0.1:{port}: "
            f"{exc.strerror or exc}"
        ) from exc
