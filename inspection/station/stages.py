"""Prometheus figures of the bounded inspection path: per-stage time, refinement skipped
for the latency budget, uploads closed by their read deadline, images outside their bundle's
input domain (refused, or judged with a warning)."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram

_STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
STAGES = ("decode", "preprocess", "infer", "regions", "postprocess", "refine", "encode", "store")
"""Stages of ``Outcome.timings_ms`` that are observed (in ms there, seconds here)."""


class StageMetrics:
    """Registered on a service's own registry (``ServiceMetrics.registry``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.stage = Histogram(
            "inspection_stage_duration_seconds",
            "Wall time of one inspection stage by product (decode, preprocess, infer, regions, "
            "postprocess, refine, encode, store).",
            ["product", "stage"],
            buckets=_STAGE_BUCKETS,
            registry=registry,
        )
        self.refine_skipped = Counter(
            "inspection_refine_skipped",
            "NG results returned with their judged regions because refining would have "
            "exceeded the product's latency budget.",
            ["product"],
            registry=registry,
        )
        self.uploads_closed = Counter(
            "inspection_uploads_closed",
            "Uploads closed before their body arrived, by reason (slow: below the minimum "
            "rate, idle: no bytes for too long, deadline: total time, memory: upload budget).",
            ["reason"],
            registry=registry,
        )
        self.input_domain = input_domain_counter(registry)

    def observe(self, product: str, timings_ms: Mapping[str, float]) -> None:
        """Count one stored inspection's stages and whether its refinement was skipped."""
        for stage in STAGES:
            if stage in timings_ms:
                self.stage.labels(product, stage).observe(max(0.0, timings_ms[stage]) / 1e3)
        if timings_ms.get("refine_skipped"):
            self.refine_skipped.labels(product).inc()

    def count_input_domain(self, product: str, outcome: str) -> None:
        """Count one image outside its bundle's input domain (``Pipeline.on_input_domain``)."""
        self.input_domain.labels(product, outcome).inc()


def input_domain_counter(registry: CollectorRegistry) -> Counter:
    """``inspection_input_domain_total`` on ``registry``: the HTTP station's (``StageMetrics``)
    and the line station's (``line.station``), fed by ``Pipeline.on_input_domain``."""
    return Counter(
        "inspection_input_domain",
        "Images unlike their bundle's training images (grey under a colour bundle, far "
        "smaller, another aspect ratio) by product and outcome: refused (no verdict) or "
        "warned (judged anyway, input_check: warn).",
        ["product", "outcome"],
        registry=registry,
    )
