"""The versioned result message every sink carries: ``inspection.result/1``.

``(station_id, request_id)`` is the idempotency key: seen twice, it is a redelivery. Security
on, ``signature`` is the station's Ed25519 signature (``signer``: the key's id) of the canonical
JSON with ``signature`` set to ``""``; a MES checks it with
``ResultPayload.from_json(text).verify(public_key)``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Literal, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from inspection.core.config import from_mapping, to_mapping
from inspection.core.errors import ConfigError, InspectionError
from inspection.core.signing import key_id
from inspection.core.types import VERDICTS
from inspection.store.models import ARTEFACTS

RESULT_SCHEMA = "inspection.result/1"
T = TypeVar("T")
SIGNED_RECORD = "signed"
"""The outbox row that keeps each result's payload as signed, delivered when written (no sink
takes it): what a link that serves results reads (``Outbox.payload``), never rebuilding it."""


class PayloadError(InspectionError, ValueError):
    """A message is not a valid ``inspection.result/1`` payload."""


@dataclass(frozen=True)
class RegionPayload:
    """One defect region in image pixels: box (x0, y0, x1, y1, exclusive), its size and peak."""

    box: tuple[int, int, int, int]
    width: int
    height: int
    area: int
    area_fraction: float
    peak: tuple[int, int]
    max_score: float


@dataclass(frozen=True)
class ResultPayload:
    """The result of one inspection as sent to the PLC, the MES or a webhook."""

    request_id: str
    inspection_id: str
    station_id: str
    product: str
    part_id: str | None
    verdict: Literal["OK", "NG"]
    score: float
    threshold: float
    regions: tuple[RegionPayload, ...]
    model_version: str
    bundle_id: str
    created_at: str
    image_width: int
    image_height: int
    timings_ms: dict[str, float] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)
    signer: str = ""
    signature: str = ""
    schema: str = RESULT_SCHEMA

    def __post_init__(self) -> None:
        if self.schema != RESULT_SCHEMA:
            raise PayloadError(f"payload schema must be {RESULT_SCHEMA!r}, got {self.schema!r}")
        if self.verdict not in VERDICTS:
            raise PayloadError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if not self.request_id:
            raise PayloadError("a result payload needs a request_id (its idempotency key)")
        for name, value in self.timings_ms.items():
            if not isinstance(value, (int, float)) or value < 0:
                raise PayloadError(f"timings_ms.{name} must be a number >= 0, got {value!r}")

    def to_json(self) -> str:
        return json.dumps(to_mapping(self), sort_keys=True, separators=(",", ":"))

    def signed(self, private_key: Ed25519PrivateKey) -> ResultPayload:
        """This payload signed by ``private_key`` (the station's)."""
        unsigned = replace(self, signer=key_id(private_key.public_key()), signature="")
        signature = private_key.sign(unsigned.to_json().encode())
        return replace(unsigned, signature=base64.b64encode(signature).decode())

    def verify(self, public_key: Ed25519PublicKey) -> None:
        """Raise ``PayloadError`` unless ``public_key`` signed exactly this payload."""
        if not self.signature:
            raise PayloadError(f"result {self.request_id}: not signed")
        if self.signer != key_id(public_key):
            raise PayloadError(
                f"result {self.request_id}: signed by key {self.signer!r}, not {key_id(public_key)}"
            )
        try:
            signature = base64.b64decode(self.signature, validate=True)
            public_key.verify(signature, replace(self, signature="").to_json().encode())
        except (InvalidSignature, binascii.Error) as exc:
            raise PayloadError(f"result {self.request_id}: bad signature") from exc

    @classmethod
    def from_json(cls, text: str | bytes) -> ResultPayload:
        """Parse and validate; unknown keys or a different schema raise ``PayloadError``."""
        return json_record(cls, text, "result payload", PayloadError, schema=RESULT_SCHEMA)


def json_record(
    cls: type[T], text: str | bytes, what: str, error: type[Exception], *, schema: str = ""
) -> T:
    """The dataclass ``cls`` from the JSON object ``text`` (its ``schema`` key, if given, checked
    first); every fault raises ``error``, the messages naming ``what`` or ``schema``."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{what} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise error(f"{what} must be a JSON object, got {type(data).__name__}")
    if schema and data.get("schema") != schema:
        raise error(f"payload schema must be {schema!r}, got {data.get('schema')!r}")
    try:
        return from_mapping(cls, data, where=schema or what)
    except ConfigError as exc:
        raise error(str(exc)) from exc


def client_request_id(stored: str | None, inspection_id: str) -> str:
    """The request id as the client gave it (the store scopes it as ``station/id``)."""
    return stored.split("/", 1)[-1] if stored else inspection_id


def payload_of(
    record: Mapping[str, Any], *, timings_ms: Mapping[str, float], image_base_url: str = ""
) -> ResultPayload:
    """Payload of a stored inspection, from its column values (``Inspection`` field names)."""
    width, height = int(record["width"]), int(record["height"])
    base = f"{image_base_url.rstrip('/')}/v1/inspections/{record['id']}"
    created = record.get("created_at") or datetime.now(timezone.utc)
    if created.tzinfo is None:
        created = created.replace(tzinfo=timezone.utc)
    return ResultPayload(
        request_id=client_request_id(record.get("request_id"), record["id"]),
        inspection_id=record["id"],
        station_id=record["station_id"],
        product=record["product"],
        part_id=record.get("part_id"),
        verdict=record["verdict"],
        score=round(float(record["score"]), 6),
        threshold=float(record["threshold"]),
        regions=tuple(_region(r, width * height) for r in record.get("regions") or ()),
        model_version=record["model_version"],
        bundle_id=record["bundle_id"],
        created_at=created.isoformat(),
        image_width=width,
        image_height=height,
        timings_ms={k: round(float(v), 3) for k, v in timings_ms.items()},
        images={name: f"{base}/{name}" for name, col in ARTEFACTS.items() if record.get(col)},
    )


def _region(region: Mapping[str, Any], pixels: int) -> RegionPayload:
    x0, y0, x1, y1 = (int(v) for v in region["box"])
    area = int(region["area"])
    return RegionPayload(
        box=(x0, y0, x1, y1),
        width=x1 - x0,
        height=y1 - y0,
        area=area,
        area_fraction=round(area / pixels, 6) if pixels else 0.0,
        peak=(int(region["peak"][0]), int(region["peak"][1])),
        max_score=round(float(region["max_score"]), 6),
    )
