"""Prometheus metrics of one service instance (its own registry, so tests can build many)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import partial

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from inspection.station.live import LiveModel, LiveModels
from inspection.station.stages import StageMetrics
from inspection.store.forward import Forwarder, backlog

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServiceMetrics:
    """Requests, latency, verdicts, model swaps and the live model per product."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        counter = partial(Counter, registry=self.registry)
        gauge = partial(Gauge, registry=self.registry)
        histogram = partial(Histogram, buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.requests = counter(
            "inspection_http_requests",
            "HTTP requests by route, method and status code.",
            ["route", "method", "status"],
        )
        self.request_latency = histogram(
            "inspection_http_request_duration_seconds",
            "HTTP request wall time by route.",
            ["route"],
        )
        self.inference_latency = histogram(
            "inspection_inference_duration_seconds",
            "Model latency (preprocess + inference + postprocess) by product.",
            ["product"],
        )
        self.verdicts = counter(
            "inspection_verdicts",
            "Stored inspections by product, verdict and source (api, watch).",
            ["product", "verdict", "source"],
        )
        self._model_gauges(gauge)
        self.swaps = counter(
            "inspection_model_swaps", "Models loaded and swapped in, per product.", ["product"]
        )
        self.watch_files = counter(
            "inspection_watch_files",
            "Watch-folder files by outcome (done, replayed, failed, retry).",
            ["outcome"],
        )
        self.stages = StageMetrics(self.registry)
        self._live_labels: dict[str, tuple[str, str, str]] = {}
        self._served_labels: dict[str, list[tuple[str, str, str]]] = {}

    def _model_gauges(self, gauge: partial[Gauge]) -> None:
        """The live and served bundle, the tuning figures and the threshold per product."""
        self.live_model = gauge(
            "inspection_live_model_info",
            "1 for the bundle each product is served with.",
            ["product", "bundle_id", "model_version"],
        )
        self.served = gauge(
            "inspection_served_bundle_info",
            "1 for the bundle actually running per product (the live one or its measured-"
            "fastest sibling) with its precision.",
            ["product", "bundle_id", "precision"],
        )
        self.tuned_p50 = gauge(
            "inspection_tuned_latency_p50_ms",
            "Self-benchmark on this CPU: batch-1 p50 latency per gated bundle.",
            ["product", "bundle_id", "precision"],
        )
        self.tuned_throughput = gauge(
            "inspection_tuned_throughput_ips",
            "Self-benchmark on this CPU: best throughput (images/s) per gated bundle.",
            ["product", "bundle_id", "precision"],
        )
        self.threshold = gauge(
            "inspection_threshold",
            "Live decision threshold (normalised score) per product.",
            ["product"],
        )

    def watch_golden(self, models: LiveModels) -> None:
        """Export each product's last golden check (``core.golden``), read at every scrape."""
        self.registry.register(GoldenCollector(models))

    def model_changed(self, model: LiveModel) -> None:
        """Point the live-model gauge at ``model`` (called on every swap)."""
        labels = (model.product, model.bundle_id, model.model_version)
        previous = self._live_labels.get(model.product)
        if previous != labels:
            if previous is not None:
                self.live_model.remove(*previous)
            self.swaps.labels(model.product).inc()
        self.live_model.labels(*labels).set(1)
        self._live_labels[model.product] = labels
        self.threshold.labels(model.product).set(model.threshold)
        self._served_changed(model)

    def _served_changed(self, model: LiveModel) -> None:
        """Served bundle + precision and the self-benchmark figures that chose it."""
        for labels in self._served_labels.pop(model.product, []):
            for gauge in (self.served, self.tuned_p50, self.tuned_throughput):
                with contextlib.suppress(KeyError):
                    gauge.remove(*labels)
        served = (model.product, model.served_bundle_id, model.precision or "unknown")
        self.served.labels(*served).set(1)
        kept = [served]
        for m in model.tuning.measurements if model.tuning else ():
            labels = (model.product, m.bundle_id, m.precision)
            self.tuned_p50.labels(*labels).set(m.p50_ms)
            self.tuned_throughput.labels(*labels).set(m.throughput_ips)
            kept.append(labels)
        self._served_labels[model.product] = kept


class GoldenCollector(Collector):
    """The last golden check per product and bundle (``inspection_golden_*``) and the refused
    signed records (``inspection_decision_refused``), read at every scrape."""

    def __init__(self, models: LiveModels) -> None:
        self.models = models

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["product", "bundle_id", "precision"]
        passed = GaugeMetricFamily(
            "inspection_golden_passed",
            "Golden check of the product's last loaded bundle on this CPU (1 passed, 0 refused).",
            labels=labels,
        )
        drift = GaugeMetricFamily(
            "inspection_golden_worst_drift",
            "Worst drift of the bundle's golden outputs on this CPU, in normalised units.",
            labels=labels,
        )
        outcome = GaugeMetricFamily(
            "inspection_golden_outcome",
            "1 for the outcome of the product's last golden check on this CPU: passed, "
            "recalibrated (drifted; re-calibrated on the station's validation images) or refused.",
            labels=[*labels, "outcome"],
        )
        refused = GaugeMetricFamily(
            "inspection_decision_refused",
            "1 while the newest record of a kind (live, threshold, tuning, gate, roi) "
            "is refused (unsigned, altered or missing); the last good one keeps serving.",
            labels=["product", "kind"],
        )
        for product, status in self.models.status().items():
            for kind in status.get("refused") or {}:
                refused.add_metric([product, kind], 1.0)
            golden = status.get("golden")
            if not golden or not golden.get("checked"):
                continue
            values = [product, str(golden["bundle_id"]), str(golden.get("precision") or "")]
            passed.add_metric(values, 1.0 if golden["passed"] else 0.0)
            drift.add_metric(values, float(golden["worst_drift"]))
            outcome.add_metric([*values, str(golden.get("outcome", ""))], 1.0)
        yield from (passed, drift, outcome, refused)


class ForwardCollector(Collector):
    """The central backlog (``inspection_forward_*``: rows, bytes, oldest, alarm, rate,
    quarantined) and this process's forwarded rows, read at every scrape."""

    def __init__(self, forwarder: Forwarder, alarm_after_s: float) -> None:
        self.forwarder, self.alarm_after_s = forwarder, alarm_after_s

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        waiting = backlog(self.forwarder.local)
        gauges = {
            "backlog_rows": ("Results committed here, not yet in the central store.", waiting.rows),
            "backlog_bytes": ("Bytes of the waiting results' blobs.", waiting.bytes),
            "oldest_seconds": ("Age of the oldest waiting result.", waiting.oldest_age_s or 0),
            "alarm": (
                f"1 while the oldest waiting result is older than {self.alarm_after_s:g} s.",
                float(waiting.alarm(self.alarm_after_s)),
            ),
            "rate": ("Results forwarded per second over the last minute.", waiting.rate_per_s),
            "quarantined": (
                "Results the central store refused, parked here (they also alarm).",
                waiting.quarantined,
            ),
        }
        for name, (doc, value) in gauges.items():
            yield GaugeMetricFamily(f"inspection_forward_{name}", doc, value=value)
        yield CounterMetricFamily(
            "inspection_forwarded", "Results this process forwarded.", self.forwarder.forwarded
        )
        yield CounterMetricFamily(
            "inspection_forward_request_clashes",
            "Results the central store kept under a distinct request key (ids started over).",
            self.forwarder.clashes,
        )


_DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class OutboxMetrics:
    """Backlog and delivery latency per sink (Prometheus)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        counter = partial(Counter, registry=self.registry)
        gauge = partial(Gauge, registry=self.registry)
        histogram = partial(Histogram, buckets=_DELIVERY_BUCKETS, registry=self.registry)
        self.backlog = gauge("inspection_outbox_backlog", "Results waiting for a sink.", ["sink"])
        self.oldest = gauge(
            "inspection_outbox_oldest_seconds",
            "Age of the oldest undelivered result per sink.",
            ["sink"],
        )
        self.latency = histogram(
            "inspection_outbox_delivery_seconds",
            "From inspection commit to the sink's acknowledgement.",
            ["sink"],
        )
        self.failures = counter("inspection_outbox_failures", "Failed delivery attempts.", ["sink"])


class HandshakeMetrics:
    """PLC triggers by handshake (opcua, mqtt) and result, and trigger-to-answer time."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        counter = partial(Counter, registry=self.registry)
        histogram = partial(Histogram, buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.triggers = counter(
            "inspection_triggers",
            "Triggers answered, by handshake and result (OK, NG or the error code name).",
            ["via", "result"],
        )
        self.latency = histogram(
            "inspection_trigger_duration_seconds",
            "From the trigger to the answer (Done over OPC UA, the answer message over MQTT).",
            ["via"],
        )
        self.warmups = counter(
            "inspection_trigger_warmups",
            "Warm-on-trigger decisions by product and outcome (started; skipped: recent, busy, "
            "disabled, unsupported).",
            ["product", "outcome"],
        )
