"""The trigger -> answer step every PLC handshake shares (OPC UA nodes or MQTT topics).

A ``Trigger`` from the line becomes capture -> inspect -> store (+ outbox) and comes back
as an ``Answer``: OK/NG with the score, or an ``ErrorCode`` saying why there is no verdict.
The answer is due within ``timeout_s``; an inspection that overruns is answered ``TIMEOUT``
but keeps running, and its result is still stored and published through the outbox.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal

from inspection.core.config import from_mapping, to_mapping
from inspection.core.errors import ConfigError, InspectionError
from inspection.line.camera import Camera, CaptureError
from inspection.line.config import WarmConfig
from inspection.line.warm import TriggerWarmer, WarmHook
from inspection.station.errors import (
    BadImage,
    InputOutOfDomain,
    InvalidRequest,
    NoLiveModel,
    PartNotAligned,
    ReplayConflict,
    RequestRefused,
    StationBusy,
    UnknownProduct,
)
from inspection.station.pipeline import Outcome, Pipeline, check_request_id, stored_request_id

ANSWER_SCHEMA = "inspection.answer/1"


class ErrorCode(IntEnum):
    """Why a trigger got no verdict (written to the PLC as an integer)."""

    NONE = 0
    NO_IMAGE = 1  # the camera delivered nothing
    BAD_IMAGE = 2  # the image could not be decoded or is too large
    NO_MODEL = 3  # the product has no live model on this station
    TIMEOUT = 4  # no verdict within the takt budget (the result still follows via the outbox)
    UNKNOWN_PRODUCT = 5  # the PLC selected a product this station does not serve
    BAD_TRIGGER = 6  # malformed trigger (request id, part id, JSON)
    NOT_ALIGNED = 7  # the part could not be registered to the product's reference image
    OUT_OF_DOMAIN = 8  # the image is unlike the bundle's training images (colour, size, aspect)
    INTERNAL = 9  # anything else; the station log has the details


class ResultCode(IntEnum):
    """The PLC's ``Result`` integer."""

    NONE = 0
    OK = 1
    NG = 2
    ERROR = 3


class TriggerError(InspectionError):
    """A trigger message is malformed; the answer carries ``BAD_TRIGGER``."""


@dataclass(frozen=True)
class Trigger:
    """One request from the line. Empty ``request_id``: the station makes one up; empty
    ``product``: the product the PLC selected last (or the station's default)."""

    request_id: str | None = None
    product: str | None = None
    part_id: str | None = None

    @classmethod
    def from_json(cls, text: str | bytes) -> Trigger:
        try:
            data = json.loads(text or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise TriggerError(f"trigger is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise TriggerError(f"trigger must be a JSON object, got {type(data).__name__}")
        try:
            return from_mapping(cls, data, where="trigger")
        except ConfigError as exc:
            raise TriggerError(str(exc)) from exc


def claimed_request_id(payload: str | bytes) -> str:
    """The request id a malformed trigger carries, so its ``BAD_TRIGGER`` answer can be matched
    by the PLC; ``""`` when none can be read (the payload is not a JSON object with a string
    ``request_id``): the PLC then takes it as the answer to its last trigger."""
    try:
        data = json.loads(payload or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return ""
    claimed = data.get("request_id") if isinstance(data, dict) else None
    return claimed[:80] if isinstance(claimed, str) else ""


@dataclass(frozen=True)
class Answer:
    """What the station tells the PLC for one trigger (``inspection.answer/1`` over MQTT)."""

    request_id: str
    error_code: int
    message: str = ""
    product: str | None = None
    verdict: Literal["OK", "NG"] | None = None
    score: float | None = None
    inspection_id: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    schema: str = ANSWER_SCHEMA

    def __post_init__(self) -> None:
        if self.error_code == ErrorCode.NONE and self.verdict is None:
            raise ValueError("an answer without an error code needs a verdict")
        if self.error_code != ErrorCode.NONE and self.verdict is not None:
            raise ValueError("an error answer carries no verdict")

    @property
    def result(self) -> ResultCode:
        if self.verdict is None:
            return ResultCode.ERROR
        return ResultCode.OK if self.verdict == "OK" else ResultCode.NG

    def to_json(self) -> str:
        return json.dumps(to_mapping(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Answer:
        return from_mapping(cls, json.loads(text), where=ANSWER_SCHEMA)


_REFUSAL_CODES: dict[type[RequestRefused], ErrorCode] = {
    BadImage: ErrorCode.BAD_IMAGE,
    UnknownProduct: ErrorCode.UNKNOWN_PRODUCT,
    InvalidRequest: ErrorCode.BAD_TRIGGER,
    ReplayConflict: ErrorCode.BAD_TRIGGER,
    NoLiveModel: ErrorCode.NO_MODEL,
    StationBusy: ErrorCode.TIMEOUT,
    PartNotAligned: ErrorCode.NOT_ALIGNED,
    InputOutOfDomain: ErrorCode.OUT_OF_DOMAIN,
}


def _refusal_code(exc: RequestRefused) -> ErrorCode:
    return _REFUSAL_CODES.get(type(exc), ErrorCode.INTERNAL)


class TriggerHandler:
    """Turns triggers into answers: capture, run the pipeline, classify failures.

    Thread-safe; the OPC UA and MQTT handshakes share one handler (and so one selected
    product and one camera).
    """

    def __init__(
        self,
        camera: Camera,
        pipeline: Pipeline,
        *,
        station_id: str,
        product: str,
        timeout_s: float,
        workers: int = 2,
        warm: WarmConfig | None = None,
        on_warm: WarmHook | None = None,
    ) -> None:
        """``warm``: warm-on-trigger settings (default ``WarmConfig()``: on)."""
        self.camera = camera
        self.warmer = TriggerWarmer(warm or WarmConfig(), on_warm)
        self.pipeline = pipeline
        self.station_id = station_id
        self.timeout_s = timeout_s
        self._product = product
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="trigger")
        self.select_product(product)

    @property
    def product(self) -> str:
        return self._product

    def select_product(self, product: str) -> None:
        """The PLC switches the product for the following triggers."""
        if product not in self.pipeline.models.products:
            served = ", ".join(self.pipeline.models.products)
            raise TriggerError(f"product {product!r} is not served here; served: {served}")
        with self._lock:
            self._product = product

    def handle(self, trigger: Trigger, *, source: str) -> Answer:
        """Capture, inspect and store one part; never raises (errors become error codes)."""
        started = time.perf_counter()
        request_id = trigger.request_id or uuid.uuid4().hex[:20]
        product = trigger.product or self.product
        try:
            check_request_id(request_id)
            self.pipeline.check_product(product)
            live = self.pipeline.models.get(product)  # no live model: do not fire the camera
        except RequestRefused as exc:
            return self._error(request_id, product, _refusal_code(exc), str(exc))
        self.warmer.on_trigger(product, live.inspector)  # while the camera exposes
        future = self._executor.submit(self._inspect, trigger, request_id, product, source)
        try:
            outcome, capture_ms = future.result(timeout=self.timeout_s)
        except FutureTimeout:
            message = f"no verdict within {self.timeout_s} s; the result follows via the outbox"
            return self._error(request_id, product, ErrorCode.TIMEOUT, message)
        except CaptureError as exc:
            return self._error(request_id, product, ErrorCode.NO_IMAGE, str(exc))
        except RequestRefused as exc:
            return self._error(request_id, product, _refusal_code(exc), str(exc))
        except Exception as exc:  # a bug or a store outage must still answer the PLC
            return self._error(request_id, product, ErrorCode.INTERNAL, repr(exc))
        row = outcome.row
        if outcome.created:
            self.warmer.learn(product, capture_ms, outcome.timings_ms)
        return Answer(
            request_id=request_id,
            error_code=ErrorCode.NONE,
            product=product,
            verdict=row.verdict,
            score=round(float(row.score), 6),
            inspection_id=row.id,
            timings_ms={
                "capture_ms": round(capture_ms, 3),
                "inference_ms": round(float(row.latency_ms), 3),
                "handled_ms": round((time.perf_counter() - started) * 1000.0, 3),
            },
        )

    def _inspect(
        self, trigger: Trigger, request_id: str, product: str, source: str
    ) -> tuple[Outcome, float]:
        key = stored_request_id(self.station_id, request_id)
        if (existing := self.pipeline.store.find_by_request_id(key or "")) is not None:
            return Outcome(existing, False, 0.0), 0.0  # a retried trigger: no new capture
        frame = self.camera.capture()
        outcome = self.pipeline.run(
            frame.data,
            product=product,
            station_id=self.station_id,
            part_id=trigger.part_id,
            request_id=request_id,
            source=source,
            source_name=frame.name,
            timings_ms={"capture_ms": frame.capture_ms},
        )
        return outcome, frame.capture_ms

    @staticmethod
    def _error(request_id: str, product: str, code: ErrorCode | None, message: str) -> Answer:
        return Answer(request_id, int(code or ErrorCode.INTERNAL), message, product=product)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
