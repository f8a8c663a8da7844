"""Stored inspections for outbox tests (real rows in a real store, no model needed)."""

from __future__ import annotations

import uuid
from typing import Any

from inspection.line.payload import payload_of
from inspection.store.models import OutboxEntry


def inspection_fields(n: int, **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "request_id": f"cam-1/req-{n:05d}",
        "product": "brick",
        "station_id": "cam-1",
        "part_id": f"part-{n}",
        "score": 0.75,
        "threshold": 0.5,
        "verdict": "NG",
        "model_version": "brick/v0001",
        "bundle_id": "v0001-int8",
        "latency_ms": 12.5,
        "regions": [
            {"box": [2, 3, 12, 8], "area": 40, "peak": [5, 4], "max_score": 0.9, "mean_score": 0.7}
        ],
        "width": 100,
        "height": 50,
        "image_sha": "a" * 64,
        "overlay_sha": "b" * 64,
    }
    return fields | overrides


def entries(fields: dict[str, Any], sinks: tuple[str, ...]) -> list[OutboxEntry]:
    payload = payload_of(fields, timings_ms={"inference_ms": fields["latency_ms"]})
    return [OutboxEntry(sink, payload.request_id, payload.to_json()) for sink in sinks]
