"""Security regressions from the attack run (issue 14): bounded work, no 5xx, no orphan blobs."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from PIL import Image
from prometheus_client import generate_latest

from inspection.service.app import create_app
from inspection.service.config import WatchConfig
from inspection.service.errors import http_error
from inspection.station.errors import ReplayConflict, StationBusy
from inspection.station.limits import AdmissionGate
from inspection.station.pipeline import check_replay
from inspection.store.models import Inspection
from inspection.store.tokens import create_token

from .helpers import PRODUCT, Bundles, Served, serving_registry, station_config, watching

pytestmark = pytest.mark.slow


def _encoded(width: int, height: int, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 60, 40)).save(buffer, fmt)
    return buffer.getvalue()


SMALL_PNG = _encoded(32, 24)


def _blob_files(served: Served) -> set[Path]:
    root = served.config.core.blob_dir
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


# (case, body, query params, expected status, message fragment)
HOSTILE = [
    ("100000x1 strip", _encoded(100_000, 1), {}, 400, "each side must be 1 to 16384 pixels"),
    ("1x70000 strip", _encoded(1, 70_000), {}, 400, "each side must be 1 to 16384 pixels"),
    ("GIF not allowed", _encoded(16, 16, "GIF"), {}, 400, "accepted format (PNG, JPEG, BMP, TIFF)"),
    ("EPS not allowed", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", {}, 400, "accepted format"),
    ("NUL in part_id", SMALL_PNG, {"part_id": "p\x00q"}, 422, "control characters"),
    ("newline in part_id", SMALL_PNG, {"part_id": "p\nq"}, 422, "control characters"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "params", "status", "message"),
    [case[1:] for case in HOSTILE],
    ids=[case[0] for case in HOSTILE],
)
def test_hostile_upload_is_4xx_and_writes_no_blob(
    module_served: Served, body: bytes, params: dict, status: int, message: str
) -> None:
    before = _blob_files(module_served)
    response = module_served.inspect(body, **params)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert _blob_files(module_served) == before


def test_huge_offset_is_422_not_500(module_served: Served) -> None:
    for offset in (2**63, 2**31):
        response = module_served.client.get(
            "/v1/inspections", params={"offset": offset}, headers=module_served.headers
        )
        assert response.status_code == 422, response.text


def test_failed_commit_leaves_no_orphan_blobs(
    module_served: Served, sample_images: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = module_served.station.store

    def broken(**_fields: object) -> None:
        raise RuntimeError("store fault injected by the test")

    before = _blob_files(module_served)
    monkeypatch.setattr(store, "add_inspection", broken)
    with pytest.raises(RuntimeError, match="fault injected"):
        module_served.station.pipeline.run(
            sample_images["good0"], product=PRODUCT, station_id="st-1"
        )
    assert _blob_files(module_served) == before
    monkeypatch.undo()
    assert module_served.inspect(sample_images["good0"]).status_code == 201


def test_watch_folder_does_not_follow_symlinks(
    tmp_path: Path, bundles: Bundles, sample_images: dict[str, bytes]
) -> None:
    serving_registry(tmp_path / "registry", bundles)
    watch = WatchConfig(root=tmp_path / "watch", default_product=PRODUCT, settle_seconds=0)
    config = station_config(tmp_path, watch=watch)
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "s.png").write_bytes(sample_images["good0"])
    with watching(config) as watcher:
        incoming = config.watch.root / "incoming"
        (incoming / "link.png").symlink_to(outside / "s.png")
        (incoming / PRODUCT).symlink_to(outside, target_is_directory=True)
        outcomes = watcher.scan_once()
        assert [(o.name, o.status) for o in outcomes] == [("link.png", "failed")]
        assert "symbolic links are not followed" in outcomes[0].detail
        assert watcher.pipeline.store.count_inspections() == 0
        assert (outside / "s.png").is_file()


def _asgi_post(app: object, token: str, receive: object) -> list[dict]:
    """POST /v1/inspect straight into the ASGI app with a scripted client; returns sent events."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/inspect",
        "raw_path": b"/v1/inspect",
        "query_string": b"product=" + PRODUCT.encode(),
        "headers": [
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-type", b"image/png"),
            (b"content-length", b"100000"),
        ],
        "client": ("10.0.0.9", 5000),
        "server": ("testserver", 80),
    }
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def _status(sent: list[dict]) -> int:
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


def test_slow_body_gets_408_and_a_disconnect_is_no_500(tmp_path: Path, bundles: Bundles) -> None:
    serving_registry(tmp_path / "registry", bundles)
    app = create_app(station_config(tmp_path, body_timeout_seconds=0.2))
    token, _ = create_token(app.state.station.store, "st-1")

    async def trickle() -> dict:
        await asyncio.sleep(0.05)
        return {"type": "http.request", "body": b"\x89PNG", "more_body": True}

    assert _status(_asgi_post(app, token, trickle)) == 408

    async def gone() -> dict:
        return {"type": "http.disconnect"}

    assert _status(_asgi_post(app, token, gone)) == 499
    metrics = generate_latest(app.state.station.metrics.registry).decode()
    assert 'status="499"' in metrics and 'status="5' not in metrics
    app.state.station.store.engine.dispose()


def test_admission_gate_answers_503_with_retry_after() -> None:
    gate = AdmissionGate(2)
    with gate.admit(), gate.admit():
        with pytest.raises(StationBusy) as caught, gate.admit():
            pass
        response = http_error(caught.value)
        assert response.status == 503 and response.headers == {"Retry-After": "1"}
    with gate.admit():
        assert gate.in_flight == 1


@pytest.mark.parametrize(
    ("product", "digest", "message"),
    [
        ("grass", "a" * 64, "already used for product 'brick'"),
        (PRODUCT, "b" * 64, "different image"),
        (PRODUCT, None, "without a payload digest"),  # #92: a row without one is no replay
    ],
)
def test_replay_with_another_product_or_payload_is_409(
    product: str, digest: str | None, message: str
):
    stored = Inspection(request_id="st-1/part-7", product=PRODUCT, payload_digest="a" * 64)
    assert check_replay(stored, PRODUCT, "a" * 64) is stored
    if digest is None:  # the stored row has none; the request brings the same bytes
        stored.payload_digest, digest = None, "a" * 64
    with pytest.raises(ReplayConflict, match=message) as caught:
        check_replay(stored, product, digest)
    assert http_error(caught.value).status == 409 and "'part-7'" in caught.value.message
