"""Least privilege: stations read only their own results; people act with audited roles."""

from __future__ import annotations

import pytest

from inspection.store.tokens import create_token

from .helpers import PRODUCT, V1, Served

pytestmark = pytest.mark.slow


def _bearer(served: Served, name: str, role: str) -> dict[str, str]:
    token, _ = create_token(served.station.store, name, "tests", role=role)
    return {"Authorization": f"Bearer {token}"}


def test_station_tokens_never_read_another_stations_results(
    module_served: Served, sample_images: dict[str, bytes]
) -> None:
    mine = module_served.inspect(sample_images["good0"]).json()
    other = _bearer(module_served, "st-2", "station")
    theirs = module_served.client.post(
        "/v1/inspect",
        params={"product": PRODUCT},
        content=sample_images["defect0"],
        headers=other | {"Content-Type": "image/png"},
    ).json()
    attempts = [f"/v1/inspections/{theirs['id']}", "/v1/inspections?station_id=st-2"]
    attempts += [f"/v1/inspections/{theirs['id']}/{name}" for name in theirs["links"]]
    attempts += [f"/v1/blobs/{sha}" for sha in theirs["blobs"].values() if sha]
    attempts = [url for url in attempts if theirs["blobs"]["image"] != mine["blobs"]["image"]]
    statuses = [
        module_served.client.get(url, headers=module_served.headers).status_code for url in attempts
    ]
    assert len(attempts) >= 9 and set(statuses) <= {403, 404}, statuses
    listing = module_served.client.get("/v1/inspections", headers=module_served.headers).json()
    assert {item["station_id"] for item in listing["items"]} == {"st-1"}
    own = module_served.client.get(
        f"/v1/blobs/{mine['blobs']['image']}", headers=module_served.headers
    )
    assert own.status_code == 200
    reviewer = _bearer(module_served, "alice", "reviewer")
    everything = module_served.client.get("/v1/inspections", headers=reviewer).json()
    assert {item["station_id"] for item in everything["items"]} == {"st-1", "st-2"}


def test_write_apis_need_their_role_and_audit_the_identity(
    module_served: Served, sample_images: dict[str, bytes]
) -> None:
    inspection_id = module_served.inspect(sample_images["defect1"]).json()["id"]
    review = {"label": "defect", "defect_type": "crack"}
    url = f"/v1/inspections/{inspection_id}/review"
    denied = module_served.client.post(url, json=review, headers=module_served.headers)
    assert denied.status_code == 403 and "role reviewer or admin" in denied.json()["detail"]
    assert module_served.client.post(
        url, json=review, headers=_bearer(module_served, "alice", "reviewer")
    ).is_success
    assert [r.reviewer for r in module_served.station.store.reviews_of(inspection_id)] == ["alice"]

    threshold = {"value": 0.6, "reason": "fewer false alarms"}
    url = f"/v1/products/{PRODUCT}/threshold"
    for headers in (module_served.headers, _bearer(module_served, "alice", "reviewer")):
        assert module_served.client.post(url, json=threshold, headers=headers).status_code == 403
    admin = _bearer(module_served, "bob", "admin")
    assert module_served.client.post(url, json=threshold, headers=admin).json()["value"] == 0.6
    assert module_served.registry.journal.events(PRODUCT)[-1]["actor"] == "bob"
    bad = module_served.client.post(url, json={"value": 0.6, "reason": "x\x00y"}, headers=admin)
    assert bad.status_code == 422
    promote = {"bundle_id": "v9999-fp32", "reason": "test"}
    refused = module_served.client.post(
        f"/v1/products/{PRODUCT}/promote", json=promote, headers=admin
    )
    assert (
        refused.status_code == 409
        and str(module_served.config.core.registry_dir) not in refused.text
    )
    rollback = module_served.client.post(
        f"/v1/products/{PRODUCT}/rollback", json={"reason": "test"}, headers=admin
    )
    assert rollback.status_code == 409 and "no earlier live bundle" in rollback.json()["detail"]


def test_ops_endpoints_are_minimal_or_need_a_monitor(module_served: Served) -> None:
    anonymous = module_served.client.get("/healthz")
    assert anonymous.status_code == 200 and anonymous.json() == {"status": "ok"}
    as_station = module_served.client.get("/healthz", headers=module_served.headers)
    assert as_station.json() == {"status": "ok"}
    full = module_served.ops("/healthz").json()
    assert full["products"][PRODUCT]["bundle_id"] == V1
    assert module_served.client.get("/metrics").status_code == 401
    assert module_served.client.get("/metrics", headers=module_served.headers).status_code == 403
    assert module_served.ops("/metrics").status_code == 200


def test_unknown_role_is_refused(module_served: Served) -> None:
    from inspection.store.store import StoreError

    with pytest.raises(StoreError, match="unknown role 'root'"):
        create_token(module_served.station.store, "eve", role="root")
