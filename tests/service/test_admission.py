"""Admission: uploads are admitted apart from inference, slow clients are closed by their read
deadlines, and a station's inspection is never refused because other clients are slow.

The slow clients are real HTTP requests whose bodies trickle through httpx's ASGI transport
(it hands the body to the app chunk by chunk, as a socket would) into the real station app.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from .helpers import PRODUCT, Bundles, Served, serve, serving_registry, station_config

pytestmark = pytest.mark.slow


@pytest.fixture
def strict(tmp_path: Path, bundles: Bundles) -> Iterator[Served]:
    """A station with short read deadlines and room for two inferences at once."""
    serving_registry(tmp_path / "registry", bundles)
    config = station_config(
        tmp_path,
        body_idle_seconds=0.5,
        upload_grace_seconds=0.5,
        min_upload_bytes_per_second=20_000.0,
        body_timeout_seconds=10.0,
        max_in_flight=2,
    )
    with serve(config) as running:
        yield running


async def _trickle(data: bytes, pause_s: float, stop: asyncio.Event) -> AsyncIterator[bytes]:
    """``data`` a few bytes at a time, ``pause_s`` apart, until sent or ``stop`` is set."""
    for start in range(0, len(data), 16):
        if stop.is_set():
            return
        yield data[start : start + 16]
        await asyncio.sleep(pause_s)


def _client(served: Served) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=served.client.app)
    return httpx.AsyncClient(transport=transport, base_url="http://station", timeout=60.0)


def _post(client: httpx.AsyncClient, served: Served, content: object) -> object:
    headers = served.headers | {"Content-Type": "image/png"}
    return client.post("/v1/inspect", params={"product": PRODUCT}, content=content, headers=headers)


def test_slow_upload_is_closed_by_its_deadline(strict: Served, sample_images: dict) -> None:
    async def run() -> httpx.Response:
        async with _client(strict) as client:
            stop = asyncio.Event()
            return await _post(client, strict, _trickle(sample_images["defect0"], 0.2, stop))

    response = asyncio.run(run())
    assert response.status_code == 408
    assert response.headers["connection"] == "close"
    assert "slower than" in response.json()["detail"]
    metrics = strict.ops("/metrics").text
    assert 'inspection_uploads_closed_total{reason="slow"} 1.0' in metrics


def test_silent_upload_is_closed_when_idle(strict: Served, sample_images: dict) -> None:
    async def silent() -> AsyncIterator[bytes]:
        yield sample_images["good0"][:100]
        await asyncio.sleep(3.0)  # longer than body_idle_seconds
        yield sample_images["good0"][100:]

    async def run() -> httpx.Response:
        async with _client(strict) as client:
            return await _post(client, strict, silent())

    response = asyncio.run(run())
    assert response.status_code == 408
    assert "no upload bytes arrived" in response.json()["detail"]


def test_station_is_never_refused_while_slow_uploads_are_pending(
    tmp_path: Path, bundles: Bundles, sample_images: dict
) -> None:
    """Twenty slow uploads are still arriving (ten times the inference limit of two, within
    their deadlines); the station's own inspections are all admitted and stored."""
    serving_registry(tmp_path / "registry", bundles)
    config = station_config(tmp_path, max_in_flight=2, upload_grace_seconds=60.0)

    async def run(served: Served) -> tuple[list[int], list[bool], list[int]]:
        async with _client(served) as client:
            stop = asyncio.Event()
            slow = [
                asyncio.create_task(
                    _post(client, served, _trickle(sample_images["good1"], 0.05, stop))
                )
                for _ in range(20)
            ]
            await asyncio.sleep(0.2)  # all twenty are mid-upload now
            station = []
            for name in ("good0", "defect0", "defect1"):
                response = await _post(client, served, sample_images[name])
                station.append(response.status_code)
            pending = [not task.done() for task in slow]
            stop.set()  # the slow bodies end early: truncated images
            slow_codes = [(await task).status_code for task in slow]
            return station, pending, slow_codes

    with serve(config) as served:
        station, pending, slow = asyncio.run(run(served))
    assert station == [201, 201, 201]
    assert all(pending)
    # the twenty truncated bodies then arrive at once: 400 (not an image) or, past the two
    # inference slots, 503 with Retry-After (backpressure, never a crash)
    assert set(slow) <= {400, 503}, slow


def test_upload_memory_budget_refuses_only_what_does_not_fit(
    tmp_path: Path, bundles: Bundles, sample_images: dict
) -> None:
    """Bytes held by arriving uploads are bounded: an upload larger than the whole budget
    gets 503 (retry later), a small one still gets in."""
    serving_registry(tmp_path / "registry", bundles)
    small = len(sample_images["good0"])
    config = station_config(tmp_path, max_upload_memory_bytes=small + 1)
    big = sample_images["good0"] + b"\0" * (small + 2)
    with serve(config) as served:
        assert served.inspect(big).status_code == 503
        assert served.inspect(sample_images["good0"]).status_code == 201
        assert 'inspection_uploads_closed_total{reason="memory"} 1.0' in served.ops("/metrics").text
