"""Bad uploads and requests get a 4xx with a clear message, never a 5xx; serving continues."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from inspection.store.tokens import create_token, revoke_token

from .helpers import PRODUCT, Served

pytestmark = pytest.mark.slow


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 60, 40)).save(buffer, "PNG")
    return buffer.getvalue()


SMALL_PNG = _png(128, 128)  # a plain colour picture: refused before the model, or out of domain
HUGE_PIXELS_PNG = _png(1100, 1000)  # 1.1 MP > max_pixels (1 MP), tiny on the wire
NOISE = np.random.default_rng(0).integers(0, 256, 400_000, dtype=np.uint8).tobytes()
MULTIPART = "multipart/form-data; boundary=XyZ"


def _multipart(name: str, filename: str | None, content_type: str, data: bytes) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return (
        (
            f"--XyZ\r\nContent-Disposition: {disposition}\r\nContent-Type: {content_type}\r\n\r\n"
        ).encode()
        + data
        + b"\r\n--XyZ--\r\n"
    )


# (case, query params, content type, body, expected status, expected message fragment)
BAD_UPLOADS = [
    ("empty body", {}, "image/png", b"", 400, "empty upload"),
    ("not an image", {}, "image/png", b"hello, I am text", 400, "not an image"),
    ("truncated png", {}, "image/png", SMALL_PNG[:60], 400, "truncated or corrupt"),
    ("over the byte limit", {}, "image/png", NOISE, 413, "upload too large"),
    ("over the pixel limit", {}, "image/png", HUGE_PIXELS_PNG, 400, "above the limit of 1000000"),
    ("text content type", {}, "text/plain", SMALL_PNG, 415, "unsupported content type 'text/plain'"),
    ("json content type", {}, "application/json", b"{}", 415, "unsupported content type"),
    ("no content type", {}, "", SMALL_PNG, 415, "unsupported content type 'none'"),
    ("unknown product", {"product": "bolt"}, "image/png", SMALL_PNG, 404, "product 'bolt' is not served here; served: brick (the station config's core.products"),
    ("missing product", {"product": ""}, "image/png", SMALL_PNG, 422, "missing 'product'"),
    ("bad request id", {"request_id": "../etc"}, "image/png", SMALL_PNG, 422, "request_id '../etc' is invalid"),
    ("long part id", {"part_id": "p" * 129}, "image/png", SMALL_PNG, 422, "part_id is longer than 128"),
    ("multipart without boundary", {}, "multipart/form-data", b"--x\r\n", 400, "malformed multipart body"),
    ("multipart garbage", {}, MULTIPART, b"\x00\x01garbage", 400, "malformed multipart body"),
    ("multipart no image field", {}, MULTIPART, _multipart("photo", "a.png", "image/png", SMALL_PNG), 422, "no file field named 'image'"),
    ("multipart image as text field", {}, MULTIPART, _multipart("image", None, "image/png", SMALL_PNG), 422, "no file field named 'image'"),
    ("multipart wrong part type", {}, MULTIPART, _multipart("image", "a.txt", "text/plain", SMALL_PNG), 415, "the 'image' part has content type 'text/plain'"),
    ("multipart non-image", {}, MULTIPART, _multipart("image", "a.png", "image/png", b"GIF89"), 400, "not an image"),
    ("multipart over the limit", {}, MULTIPART, _multipart("image", "a.png", "image/png", NOISE), 413, "upload too large"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("params", "content_type", "body", "status", "message"),
    [case[1:] for case in BAD_UPLOADS],
    ids=[case[0] for case in BAD_UPLOADS],
)
def test_bad_upload_gets_a_clear_4xx(
    module_served: Served,
    sample_images: dict[str, bytes],
    params: dict,
    content_type: str,
    body: bytes,
    status: int,
    message: str,
) -> None:
    headers = module_served.headers | ({"Content-Type": content_type} if content_type else {})
    response = module_served.client.post(
        "/v1/inspect", params={"product": PRODUCT} | params, content=body, headers=headers
    )
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert module_served.inspect(sample_images["good0"]).status_code == 201  # still serving


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing API token"),
        ("Bearer", "missing API token"),
        ("Basic dXNlcjpwdw==", "missing API token"),
        ("Bearer insp_not-a-real-token", "invalid or revoked API token"),
    ],
)
def test_missing_or_bad_token_is_401(module_served: Served, header: str | None, message: str):
    headers = {"Content-Type": "image/png"} | ({"Authorization": header} if header else {})
    for method, url in [("POST", "/v1/inspect?product=brick"), ("GET", "/v1/inspections")]:
        response = module_served.client.request(method, url, content=SMALL_PNG, headers=headers)
        assert response.status_code == 401
        assert response.json()["detail"].startswith(message)
        assert response.headers["www-authenticate"] == "Bearer"


def test_revoked_token_is_401(module_served: Served) -> None:
    token, info = create_token(module_served.station.store, "st-9")
    headers = {"Authorization": f"Bearer {token}"}
    assert module_served.client.get("/v1/inspections", headers=headers).status_code == 200
    revoke_token(module_served.station.store, info.id)
    response = module_served.client.get("/v1/inspections", headers=headers)
    assert response.status_code == 401 and "revoked" in response.json()["detail"]


@pytest.mark.parametrize(
    ("url", "status", "message"),
    [
        ("/v1/inspections/nope", 404, "no inspection with id 'nope'"),
        ("/v1/inspections/nope/overlay", 404, "no inspection with id 'nope'"),
        ("/v1/blobs/abc", 404, "not a blob id"),
        ("/v1/blobs/" + "0" * 64, 404, "not found"),
        ("/v1/inspections?verdict=MAYBE", 422, None),
        ("/v1/inspections?limit=0", 422, None),
        ("/v1/inspections?since=yesterday", 422, None),
    ],
)
def test_bad_queries_are_4xx(module_served: Served, url: str, status: int, message: str | None):
    response = module_served.client.get(url, headers=module_served.headers)
    assert response.status_code == status
    if message:
        assert message in response.json()["detail"]


def test_unknown_artefact_is_404(module_served: Served, sample_images: dict[str, bytes]) -> None:
    inspection_id = module_served.inspect(sample_images["good0"]).json()["id"]
    response = module_served.client.get(
        f"/v1/inspections/{inspection_id}/heatmap", headers=module_served.headers
    )
    assert response.status_code == 404
    assert response.json()["detail"] == (
        "unknown artefact 'heatmap'; use one of ['image', 'overlay', 'mask', 'map']"
    )


_CONTENT_TYPES = st.sampled_from(
    ["image/png", "image/jpeg", "application/octet-stream", "multipart/form-data; boundary=XyZ"]
)
_PREFIXES = st.sampled_from(
    [b"", SMALL_PNG[:16], SMALL_PNG[:200], b"\xff\xd8\xff", b"BM", b"--XyZ\r\n"]
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(prefix=_PREFIXES, payload=st.binary(max_size=1024), content_type=_CONTENT_TYPES)
def test_fuzzed_uploads_never_5xx(
    module_served: Served, prefix: bytes, payload: bytes, content_type: str
) -> None:
    response = module_served.client.post(
        "/v1/inspect",
        params={"product": PRODUCT},
        content=prefix + payload,
        headers=module_served.headers | {"Content-Type": content_type},
    )
    assert response.status_code < 500, response.text
    assert response.status_code in (200, 201) or response.json()["detail"]


def test_server_reports_no_5xx_after_the_barrage(
    module_served: Served, sample_images: dict[str, bytes], tmp_path: Path
) -> None:
    metrics = module_served.ops("/metrics").text
    errors = [
        line
        for line in metrics.splitlines()
        if line.startswith("inspection_http_requests_total") and 'status="5' in line
    ]
    assert errors == []
    assert module_served.inspect(sample_images["good0"]).status_code == 201
