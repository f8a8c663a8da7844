from __future__ import annotations

import json

import pytest

from inspection.line.payload import RESULT_SCHEMA, PayloadError, ResultPayload, payload_of

from .records import inspection_fields


def test_payload_round_trips_with_region_sizes_and_links() -> None:
    fields = inspection_fields(7)
    payload = payload_of(fields, timings_ms={"capture_ms": 1.25}, image_base_url="http://st:8080/")
    assert payload.schema == RESULT_SCHEMA
    assert payload.request_id == "req-00007"  # the client's id, without the station scope
    region = payload.regions[0]
    assert (region.width, region.height, region.area) == (10, 5, 40)
    assert region.area_fraction == pytest.approx(40 / 5000)
    assert payload.images == {
        "image": f"http://st:8080/v1/inspections/{fields['id']}/image",
        "overlay": f"http://st:8080/v1/inspections/{fields['id']}/overlay",
    }
    assert ResultPayload.from_json(payload.to_json()) == payload


def test_payload_without_client_request_id_uses_the_inspection_id() -> None:
    fields = inspection_fields(1, request_id=None)
    assert payload_of(fields, timings_ms={}).request_id == fields["id"]


def _mutated(**changes: object) -> str:
    data = json.loads(payload_of(inspection_fields(1), timings_ms={}).to_json())
    return json.dumps(data | changes)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "must be a JSON object"),
        (_mutated(schema="inspection.result/2"), "schema must be 'inspection.result/1'"),
        (_mutated(verdict="MAYBE"), "verdict"),
        (_mutated(colour="red"), "unknown key(s) 'colour'"),
        (_mutated(request_id=""), "needs a request_id"),
        (_mutated(timings_ms={"inference_ms": -1}), "timings_ms.inference_ms"),
    ],
)
def test_bad_payloads_are_rejected_by_name(text: str, message: str) -> None:
    with pytest.raises(PayloadError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ResultPayload.from_json(text)
