"""API contract of the station service, against a real exported bundle."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import cv2
import numpy as np
import pytest

from inspection.store.tokens import create_token

from .helpers import PRODUCT, V1, Served

pytestmark = pytest.mark.slow

RESULT_KEYS = {
    "id", "request_id", "created_at", "product", "station_id", "part_id", "source",
    "source_name", "score", "threshold", "verdict", "model_version", "bundle_id", "latency_ms",
    "mask_source", "width", "height", "regions", "review_label", "links", "blobs", "replayed",
    "timings_ms",
}  # fmt: skip


def test_inspect_multipart_returns_the_stored_result(served: Served, sample_images) -> None:
    response = served.client.post(
        "/v1/inspect",
        params={"product": PRODUCT},
        data={"part_id": "P-17", "request_id": "req-1"},
        files={"image": ("cam1/part17.png", sample_images["defect0"], "image/png")},
        headers=served.headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == RESULT_KEYS
    assert body["station_id"] == "st-1"  # from the token, not the client
    assert body["part_id"] == "P-17" and body["request_id"] == "req-1"
    assert body["source_name"] == "part17.png"
    assert body["bundle_id"] == V1 and body["model_version"] == f"{PRODUCT}/{V1}"
    assert 0.0 <= body["score"] <= 1.0 and body["verdict"] in ("OK", "NG")
    assert body["verdict"] == ("NG" if body["score"] > body["threshold"] else "OK")
    assert (body["width"], body["height"]) == (128, 128)
    assert body["replayed"] is False
    assert {"decode", "preprocess", "infer", "regions", "store"} <= set(body["timings_ms"])
    row = served.station.store.get_inspection(body["id"])
    assert row.request_id == "st-1/req-1" and row.score == pytest.approx(body["score"])


def test_raw_body_and_links_serve_decodable_artefacts(served: Served, sample_images) -> None:
    body = served.inspect(sample_images["good0"]).json()
    expected = {
        "image": (128, 128, 3),
        "overlay": (128, 128, 3),
        "mask": (128, 128),
        "map": (128, 128),
    }
    if body["verdict"] == "OK":  # a good part stores no overlay (configs/retention.yaml)
        assert "overlay" not in body["links"]
        del expected["overlay"]
    for name, shape in expected.items():
        response = served.client.get(body["links"][name], headers=served.headers)
        assert response.status_code == 200, name
        decoded = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_UNCHANGED)
        assert decoded.shape == shape, name
        blob = served.client.get(f"/v1/blobs/{body['blobs'][name]}", headers=served.headers)
        assert blob.content == response.content
    mask = served.client.get(body["links"]["mask"], headers=served.headers).content
    values = set(np.unique(cv2.imdecode(np.frombuffer(mask, np.uint8), cv2.IMREAD_UNCHANGED)))
    assert values <= {0, 255}


def test_request_id_makes_retries_idempotent(served: Served, sample_images) -> None:
    first = served.inspect(sample_images["good0"], request_id="retry-1")
    again = served.inspect(sample_images["good0"], request_id="retry-1")
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["replayed"] is True
    assert served.station.store.count_inspections() == 1


@pytest.mark.parametrize(
    ("image", "params", "message"),
    [
        ("good1", {}, "already used with a different image"),
        ("good0", {"product": "grass"}, "is not served here"),
        ("empty", {}, "empty upload"),
    ],
)
def test_replayed_request_id_with_another_payload_is_refused(
    served: Served, sample_images, image: str, params: dict, message: str
) -> None:
    """A part counter that resets must not hand a new part the old part's verdict."""
    first = served.inspect(sample_images["good0"], request_id="part-7")
    data = b"" if image == "empty" else sample_images[image]
    replay = served.inspect(data, request_id="part-7", **params)
    assert first.status_code == 201
    assert replay.status_code in (400, 404, 409) and message in replay.json()["detail"]
    assert served.station.store.count_inspections() == 1


def test_list_filters_and_pages(served: Served, sample_images) -> None:
    ids = [served.inspect(sample_images[k]).json()["id"] for k in ("good0", "good1", "defect0")]
    listing = served.client.get("/v1/inspections", headers=served.headers).json()
    assert listing["total"] == 3 and {item["id"] for item in listing["items"]} == set(ids)
    page = served.client.get(
        "/v1/inspections", params={"limit": 2, "offset": 2}, headers=served.headers
    ).json()
    assert page["total"] == 3 and len(page["items"]) == 1
    verdicts = [item["verdict"] for item in listing["items"]]
    for verdict in ("OK", "NG"):
        got = served.client.get(
            "/v1/inspections", params={"verdict": verdict}, headers=served.headers
        ).json()
        assert got["total"] == verdicts.count(verdict)
    token, _ = create_token(served.station.store, "alice", role="reviewer")
    reviewer = {"Authorization": f"Bearer {token}"}
    for params, total in [
        ({"product": PRODUCT}, 3),
        ({"product": "other"}, 0),
        ({"station_id": "st-1"}, 3),
        ({"station_id": "st-2"}, 0),
        ({"since": (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()}, 3),
        ({"until": (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()}, 0),
    ]:
        got = served.client.get("/v1/inspections", params=params, headers=reviewer)
        assert got.json()["total"] == total, params
    one = served.client.get(f"/v1/inspections/{ids[0]}", headers=served.headers)
    assert one.status_code == 200 and one.json()["id"] == ids[0]


def test_healthz_metrics_and_openapi(served: Served, sample_images) -> None:
    served.inspect(sample_images["defect1"])
    health = served.ops("/healthz")
    assert health.status_code == 200
    assert health.json()["products"][PRODUCT]["bundle_id"] == V1
    assert health.json()["store"]["ok"] is True
    metrics = served.ops("/metrics").text
    assert (
        f'inspection_live_model_info{{bundle_id="{V1}",model_version="{PRODUCT}/{V1}",product="{PRODUCT}"}} 1.0'
        in metrics
    )
    assert (
        'inspection_http_requests_total{method="POST",route="/v1/inspect",status="201"} 1.0'
        in metrics
    )
    assert "inspection_inference_duration_seconds_bucket" in metrics
    verdict_lines = [x for x in metrics.splitlines() if x.startswith("inspection_verdicts_total")]
    assert len(verdict_lines) == 1 and verdict_lines[0].endswith(" 1.0")
    spec = served.client.get("/openapi.json").json()
    assert {"/v1/inspect", "/v1/inspections", "/healthz", "/metrics"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/v1/inspect"]["post"]["requestBody"]["content"]
    assert served.client.get("/docs").status_code == 200


def test_ack_means_committed_for_a_new_connection(served: Served, sample_images) -> None:
    from inspection.store.store import Store

    body = served.inspect(sample_images["good1"]).json()
    fresh = Store(served.config.core.store_url, served.config.core.blob_dir)
    try:
        row = fresh.get_inspection(body["id"])
        for sha in filter(None, (row.image_sha, row.map_sha, row.mask_sha, row.overlay_sha)):
            assert fresh.blobs.path(sha).is_file()
    finally:
        fresh.engine.dispose()
