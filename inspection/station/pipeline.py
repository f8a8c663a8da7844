"""One inspection end to end: decode (or take a camera's pixels), infer, store blobs, commit
the result row.

Shared by every front door; synchronous and thread-safe. A result is returned only after the
store commit, so anything acknowledged is durable. Everything that can fail on the input runs
before the first blob is written; blobs are written before the row (a row never points at a
missing blob) and removed again when the row cannot be committed. An image the bundle refuses
(``InputOutOfDomain``, ``PartNotAligned``) is an error, never a verdict.
"""

from __future__ import annotations

import logging
import random
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np
from sqlalchemy import or_, select

from inspection.core.errors import (
    AlignmentError,
    ImageDecodeError,
    ImageTooLarge,
    InputDomainError,
)
from inspection.core.fingerprint import sha256_bytes
from inspection.core.images import DecodedImage
from inspection.core.input_domain import check_bit_depth
from inspection.core.types import InspectionResult
from inspection.runtime.bounds import Reading, stored_copy, with_camera_size
from inspection.runtime.overlays import render_overlay
from inspection.station.config import StationCoreConfig
from inspection.station.errors import (
    BadImage,
    InputOutOfDomain,
    InvalidRequest,
    PartNotAligned,
    ReplayConflict,
    StorageUnavailable,
    UnknownProduct,
)
from inspection.station.live import LiveModel, LiveModels
from inspection.station.render import encode_jpeg, encode_map, encode_mask, image_extension
from inspection.store.blobs import BlobMismatch
from inspection.store.models import Inspection, OutboxEntry
from inspection.store.retention import KeepPolicy, load_retention
from inspection.store.store import Store

log = logging.getLogger(__name__)

OutboxBuilder = Callable[[Mapping[str, Any], Mapping[str, float]], Sequence[OutboxEntry]]
"""(row fields, timings in ms) -> outbox messages committed with the inspection."""
InputDomainHook = Callable[[str, Literal["refused", "warned"]], None]
"""(product, outcome) for each image outside its bundle's input domain (``core.input_domain``)."""

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,79}$")
MAX_PART_ID = 128
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Outcome:
    """The stored row and whether this call created it (``False``: an idempotent replay)."""

    row: Inspection
    created: bool
    timings_ms: Mapping[str, float] = field(default_factory=dict)
    """Per-stage times of this inspection (decode, infer, regions, refine...) and
    ``refine_skipped`` = 1 when the latency budget left no time to refine; empty on replay."""


def check_request_id(request_id: str | None) -> str | None:
    """A client's request id as stored (None when absent); ``InvalidRequest`` when malformed."""
    if request_id is None or request_id == "":
        return None
    if not _REQUEST_ID_RE.match(request_id):
        raise InvalidRequest(
            f"request_id {request_id[:100]!r} is invalid: use 1-80 letters, digits, "
            "'.', '_', ':' or '-', starting with a letter or digit",
        )
    return request_id


def check_part_id(part_id: str | None) -> str | None:
    """Part ids are stored as text: at most 128 characters, no control characters (NUL)."""
    if part_id is None or part_id == "":
        return None
    if len(part_id) > MAX_PART_ID:
        raise InvalidRequest(f"part_id is longer than {MAX_PART_ID} characters")
    if _CONTROL_RE.search(part_id):
        raise InvalidRequest("part_id contains control characters (e.g. NUL); send plain text")
    return part_id


def check_replay(existing: Inspection, product: str, digest: str) -> Inspection:
    """The stored row for a repeated request id, if the payload is the same; else
    ``ReplayConflict``. A row without a payload digest (stored before digests, or by a path
    that keeps none) proves nothing: never a replay."""
    client_id = (existing.request_id or "").split("/", 1)[-1]
    if existing.product != product:
        raise ReplayConflict(
            f"request_id {client_id!r} was already used for product {existing.product!r}; "
            "use a new request_id for a new part",
        )
    if existing.payload_digest is None:
        raise ReplayConflict(
            f"request_id {client_id!r} is stored without a payload digest, so a retry cannot "
            "be told from another image under it; use a new request_id",
        )
    if existing.payload_digest != digest:
        raise ReplayConflict(
            f"request_id {client_id!r} was already used with a different image "
            f"(stored {existing.payload_digest[:12]}…, got {digest[:12]}…); a retry must send "
            "the same bytes, a new part needs a new request_id",
        )
    return existing


REUSED = "~"
"""Marks a stored key made fresh for a reused client id (never a client id character)."""


def stored_request_id(
    station_id: str, request_id: str | None, *, fresh: bool = False
) -> str | None:
    """The stored key of a client's request id, scoped per station; ``fresh``: a new key for a
    reused id, ``<station>/<id>~<8 hex>`` (``~`` is no client id character)."""
    if not request_id:
        return None
    return f"{station_id}/{request_id}" + (f"{REUSED}{uuid.uuid4().hex[:8]}" if fresh else "")


@dataclass(frozen=True)
class Request:
    """A checked request: what the row stores of it (``key``: the stored request id)."""

    product: str
    station_id: str
    part_id: str | None
    key: str | None
    digest: str
    source: str
    source_name: str | None


class Pipeline:
    """Runs inspections for the products this station serves under its ``config``; ``outbox``:
    the builders of the messages committed with each result (sinks, the central store)."""

    def __init__(
        self,
        store: Store,
        models: LiveModels,
        config: StationCoreConfig,
        *,
        outbox: Sequence[OutboxBuilder] = (),
        on_input_domain: InputDomainHook | None = None,
    ) -> None:
        self.store, self.models, self.config, self.bounds = store, models, config, config.bounds
        self.outbox = tuple(outbox)  # every sink's builder (the line's sinks, the central store)
        self.on_input_domain = on_input_domain
        self.retention = load_retention(config.configs)  # what a part stores, the audit rate
        self._draw = random.SystemRandom()  # OS entropy: no seed shared by forked workers
        self._keep: dict[str, KeepPolicy] = {}  # per product, resolved once (not per part)

    def last_request(self, station_id: str, request_id: str) -> Inspection | None:
        """The newest row stored under this client id (its first key or a fresh one), ``None``
        when there is none."""
        key = stored_request_id(station_id, request_id) or ""
        query = (
            select(Inspection)
            .where(Inspection.station_id == station_id)
            .where(or_(Inspection.request_id == key,
                       Inspection.request_id.startswith(key + REUSED, autoescape=True)))
            .order_by(Inspection.created_at.desc())
            .limit(1)
        )  # fmt: skip
        with self.store.session() as session:
            return session.scalar(query)

    def check_product(self, product: str | None) -> str:
        if not product:
            raise InvalidRequest(f"missing 'product'; this station serves {self._served()}")
        if product not in self.models.products:
            raise UnknownProduct(
                f"product {product[:64]!r} is not served here; served: {self._served()} "
                "(the station config's core.products lists them; a listed product needs a live "
                "bundle)"
            )
        return product

    def run(
        self,
        data: bytes,
        *,
        pixels: np.ndarray | None = None,
        product: str,
        station_id: str,
        part_id: str | None = None,
        request_id: str | None = None,
        source: str = "api",
        source_name: str | None = None,
        timings_ms: Mapping[str, float] | None = None,
        fresh_key: bool = False,
    ) -> Outcome:
        """Inspect ``data`` (encoded image bytes) and commit the result; see module doc.
        ``pixels``: what ``data`` encodes losslessly, when the caller has it (a camera's frame,
        ``line.camera.Frame``): read instead of decoding ``data`` (``Reading.adopt``), which is
        still hashed and stored; ``request_id``: the client's idempotency key; ``source``: the
        front door (``api``, ``watch``, a link); ``timings_ms``: times before the pipeline
        (capture), sent on to the outbox; ``fresh_key``: store a reused id under a new key
        (``line.handshake.replay``)."""
        started = time.perf_counter()
        request = self._request(
            data, product, station_id, part_id, request_id, fresh=fresh_key, source=source,
            source_name=source_name,
        )  # fmt: skip
        if request.key is not None and (stored := self.store.find_by_request_id(request.key)):
            return Outcome(check_replay(stored, request.product, request.digest), False)
        model = self.models.get(request.product)  # NoLiveModel when none is loaded
        audit = self._audit_draw()
        decoded, result, decode_ms = self._inspect(data, pixels, request, model)
        encode_start = time.perf_counter()
        encoded = self._encode(data, decoded, result, request.product, audit)
        stages = {"decode": decode_ms, **result.timings_ms, "encode": _ms(encode_start)}
        fields = _row(request, model.bundle_id, decoded, result, audit) | {
            column: sha256_bytes(blob) for column, (blob, _ext) in encoded.items()
        }
        fields["score_scale"] = model.inspector.metadata.normalization.fingerprint
        fields["audit_rate"] = self.retention.audit_rate if audit else None
        timings = {**(timings_ms or {}), "inference_ms": fields["latency_ms"]}
        return self._commit(request, fields, encoded, timings, stages, started)

    def _request(
        self,
        data: bytes,
        product: str,
        station_id: str,
        part_id: str | None,
        request_id: str | None,
        *,
        fresh: bool,
        source: str,
        source_name: str | None,
    ) -> Request:
        """The request checked before anything runs: product served, ids well formed, bytes
        present (``InvalidRequest``, ``UnknownProduct``, ``BadImage``)."""
        product = self.check_product(product)
        part_id = check_part_id(part_id)
        key = stored_request_id(station_id, check_request_id(request_id), fresh=fresh)
        if not data:
            raise BadImage("empty upload: the request carried no image bytes")
        return Request(product, station_id, part_id, key, sha256_bytes(data), source, source_name)

    def _inspect(
        self, data: bytes, pixels: np.ndarray | None, request: Request, model: LiveModel
    ) -> tuple[DecodedImage, InspectionResult, float]:
        """Decode ``data`` (or adopt its ``pixels``) within the station's limits and inspect (and
        the decode ms); ``BadImage``, ``PartNotAligned`` or ``InputOutOfDomain`` (counted) when
        the image cannot be judged."""
        product, name = request.product, request.source_name or "upload"
        started = time.perf_counter()
        reading = Reading.of(model.inspector)  # as the bundle's training images were read
        max_pixels, max_side = self.config.max_pixels, self.config.max_side
        try:
            if pixels is None:
                decoded = reading.decode(
                    data, max_pixels=max_pixels, max_side=max_side,
                    formats=self.config.image_formats, name=name,
                )  # fmt: skip
            else:
                decoded = reading.adopt(pixels, max_pixels=max_pixels, max_side=max_side, name=name)
        except ImageTooLarge as exc:
            raise BadImage(f"{exc}; raise core.{exc.limit} in the station config") from exc
        except ImageDecodeError as exc:
            raise BadImage(str(exc)) from exc
        decode_ms = _ms(started)
        try:
            check_bit_depth(decoded, reading.bits, model.inspector.input_check)
            result = model.inspect(decoded.image, started=started)
        except AlignmentError as exc:
            raise PartNotAligned(str(exc)) from exc
        except InputDomainError as exc:
            log.warning("%s: %s refused: %s", product, name, exc)
            self._input_domain(product, "refused")
            raise InputOutOfDomain(str(exc)) from exc
        if result.input_warnings:  # each already logged by ``Inspector.admit``
            self._input_domain(product, "warned")
        result = with_camera_size(result, decoded)
        return decoded, result, decode_ms

    def _audit_draw(self) -> bool:
        """Whether the next part joins the random audit sample (1 in ``audit_rate``): drawn before
        inspection, so independent of its verdict, since its good parts certify the false-reject rate."""
        rate = self.retention.audit_rate
        return rate > 0 and self._draw.random() < 1 / rate

    def _encode(
        self,
        data: bytes,
        decoded: DecodedImage,
        result: InspectionResult,
        product: str,
        audit: bool,
    ) -> dict[str, tuple[bytes, str]]:
        """The blobs to store ({sha column: (bytes, extension)}): image and mask always, map and
        overlay for NG parts, ``audit`` samples and what the product keeps of good ones."""
        keep = self._keep.get(product) or self._keep.setdefault(
            product, self.retention.policy(product)
        )
        good = result.verdict == "OK"
        copy = stored_copy(decoded, keep_original=self.bounds.keep_originals)
        encoded = {
            "image_sha": (data, image_extension(data)) if copy is None else (copy, ".png"),
            "mask_sha": (encode_mask(result.mask), ".png"),
        }
        if not good or audit or keep.good_map:
            encoded["map_sha"] = (encode_map(result.anomaly_map), ".png")
        if not good or keep.good_overlay:
            overlay = render_overlay(decoded.image, result, max_side=self.bounds.overlay_max_side)
            encoded["overlay_sha"] = (encode_jpeg(overlay), ".jpg")
        return encoded

    def _commit(
        self,
        request: Request,
        fields: dict[str, Any],
        encoded: Mapping[str, tuple[bytes, str]],
        timings: Mapping[str, float],
        stages: Mapping[str, float],
        started: float,
    ) -> Outcome:
        """Write the blobs, then the row with its outbox messages in one transaction; a concurrent
        request with the same key that committed first wins (this call's new blobs removed)."""
        timings = {**timings, "pipeline_ms": _ms(started)}
        stored = time.perf_counter()
        try:
            puts = [self.store.blobs.put_new(blob, ext) for blob, ext in encoded.values()]
        except BlobMismatch:  # a planted file under the blob's name: refused loudly as it is
            raise
        except OSError as exc:
            raise StorageUnavailable(
                f"cannot store the result: core.blob_dir {self.store.blobs.root}: "
                f"{exc.strerror or exc}; make the folder writable by the station"
            ) from exc
        created = [sha for sha, new in puts if new]
        try:
            outbox = [entry for build in self.outbox for entry in build(fields, timings)]
            row = self.store.add_inspection(outbox=outbox, **fields)
            if row.id != fields["id"]:  # a concurrent request with this id committed first
                check_replay(row, request.product, request.digest)
        except BaseException:
            self._discard(created, keep=set())
            raise
        if row.id != fields["id"]:
            self._discard(created, keep={row.image_sha, row.map_sha, row.mask_sha, row.overlay_sha})
        return Outcome(row, row.id == fields["id"], {**stages, "store": _ms(stored)})

    def _input_domain(self, product: str, outcome: Literal["refused", "warned"]) -> None:
        if self.on_input_domain is not None:
            self.on_input_domain(product, outcome)

    def _discard(self, created: list[str], keep: set[str | None]) -> None:
        for sha in created:
            if sha not in keep:
                self.store.blobs.delete(sha)

    def _served(self) -> str:
        return ", ".join(self.models.products)


def _row(
    request: Request,
    bundle_id: str,
    decoded: DecodedImage,
    result: InspectionResult,
    audit: bool,
) -> dict[str, Any]:
    """The ``Inspection`` row's fields but its blobs' digests."""
    return {
        "id": uuid.uuid4().hex,
        "created_at": datetime.now(timezone.utc),
        "request_id": request.key,
        "payload_digest": request.digest,
        "product": request.product,
        "station_id": request.station_id,
        "part_id": request.part_id,
        "source": request.source,
        "source_name": request.source_name,
        "score": float(result.score),
        "threshold": float(result.threshold),
        "verdict": result.verdict,
        "model_version": result.model_version,
        "bundle_id": bundle_id,
        "latency_ms": float(result.latency_ms),
        "mask_source": result.mask_source,
        "regions": [region.to_dict() for region in result.camera_regions],
        "width": int(decoded.source_size[1]),
        "height": int(decoded.source_size[0]),
        "audit_sample": audit,
    }


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
