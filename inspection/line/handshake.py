"""The trigger -> answer step every PLC link shares.

A ``Trigger`` becomes capture -> inspect -> store (+ outbox) and an ``Answer``: OK/NG with the
score, or an ``ErrorCode``. An inspection that overruns ``timeout_s`` is answered ``TIMEOUT``
but goes on, its result stored and published through the outbox. A station with several
``View``s captures them all on one trigger, stores each as its own row
(``<request id>.<view>``) and answers once for the part (``part_answer``).

A verdict leaves only with its own capture: ``replay`` is the line's one rule for when a stored
verdict may answer instead: the link's own handshake shows the trigger a retry of a cycle whose
verdict the PLC has not acknowledged, within the link's ``retry_s`` (``Cycles``), and it names
the same part. Otherwise a reused request id is a new part, and a redelivery the station cannot
tell from one is refused (``RETRY_UNPROVEN``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum, IntEnum
from typing import TYPE_CHECKING, Literal, Protocol

from inspection.core.config import from_mapping, to_mapping
from inspection.core.errors import InspectionError
from inspection.line.camera import Camera, CaptureError
from inspection.line.config import LinkSecurity, WarmConfig
from inspection.line.payload import json_record
from inspection.line.warm import TriggerWarmer, WarmHook
from inspection.station.errors import ErrorCode, RequestRefused, RetryUnproven, answer_to
from inspection.station.pipeline import Outcome, Pipeline, check_request_id, stored_request_id
from inspection.store.models import as_utc, utcnow

if TYPE_CHECKING:
    from inspection.store.store import Store

log = logging.getLogger(__name__)
ANSWER_SCHEMA = "inspection.answer/1"


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
        return json_record(cls, text or b"{}", "trigger", TriggerError)


@dataclass(frozen=True)
class Delivery:
    """What the link's own handshake state says about a trigger (``replay``'s evidence); the
    default, no evidence, is a new capture (every OPC 40100 job)."""

    retry: bool = False
    """The handshake shows this trigger a retry of a cycle whose verdict the PLC has not
    acknowledged (``Cycles.delivery``; MQTT: the broker's DUP)."""
    since: datetime | None = None
    """When that cycle began (UTC): a row stored or a shot started before it is another cycle's."""
    redelivered: bool = False
    """The link delivers this trigger again (MQTT DUP): refused when no stored part proves it."""

    def __post_init__(self) -> None:
        if self.retry and self.since is None:
            raise ValueError("a retry names when its cycle began (since)")


class Replay(Enum):
    """``replay``'s decision for one shot."""

    CAPTURE = "capture"
    STORED = "stored"
    REFUSE = "refuse"


class Part(Protocol):
    """What ``replay`` compares: a stored row, or a shot still being inspected."""

    @property
    def product(self) -> str: ...

    @property
    def part_id(self) -> str | None: ...

    @property
    def created_at(self) -> datetime: ...


def replay(delivery: Delivery, *, product: str, part_id: str | None, stored: Part | None) -> Replay:
    """Whether a trigger is answered with the verdict ``stored`` under its request id (the newest
    row, or the inspection still running) instead of a capture of its own: ``STORED`` only for a
    retry the link's handshake shows (``delivery.retry``) that names the part (``part_id``), when
    ``stored`` is that part, of the same product, from the retried cycle (not older than
    ``delivery.since``); ``REFUSE`` for a redelivery that cannot be proven so (the part may have
    left the camera); else ``CAPTURE``. A PartId, an id or a clock alone proves nothing; the HTTP
    API has its own rule."""
    if (
        delivery.retry and delivery.since is not None and part_id and stored is not None
        and (stored.product, stored.part_id) == (product, part_id)
        and as_utc(stored.created_at) >= delivery.since
    ):  # fmt: skip
        return Replay.STORED
    return Replay.REFUSE if delivery.redelivered else Replay.CAPTURE


@dataclass
class _Cycle:
    trigger: Trigger
    began: float  # time.monotonic()
    since: datetime
    acknowledged: bool = False


class Cycles:
    """One link's handshake memory for ``replay``: its last cycle, and whether the PLC
    acknowledged that cycle's verdict (``Trigger`` fell after ``Done`` rose with one). Only the
    next trigger, with the same request id, product and ``PartId``, within ``retry_s`` of the
    cycle's start and before such an acknowledgement, is a retry; anything else starts a cycle
    (a new capture). Used from the link's one handshake thread."""

    def __init__(self, retry_s: float) -> None:
        self.retry_s = retry_s
        self._last: _Cycle | None = None
        self._answered: Answer | None = None

    def delivery(self, trigger: Trigger) -> Delivery:
        """The evidence for ``trigger``, just read from the PLC."""
        last, now = self._last, time.monotonic()
        if (
            last is not None and not last.acknowledged and trigger.part_id
            and trigger == last.trigger and now - last.began <= self.retry_s
        ):  # fmt: skip
            log.info("request id %r part %r: a retry of the unacknowledged cycle %.1f s ago",
                     trigger.request_id, trigger.part_id, now - last.began)  # fmt: skip
            return Delivery(retry=True, since=last.since)
        self._last, self._answered = _Cycle(trigger, now, utcnow()), None
        return Delivery()

    def answered(self, answer: Answer) -> None:
        """The answer written for the last cycle (before ``Done`` rose)."""
        self._answered = answer

    def trigger_fell(self) -> None:
        """The PLC dropped ``Trigger``: it read the answer; a verdict ends the cycle's retries."""
        if self._last is not None and self._answered is not None and self._answered.verdict:
            self._last.acknowledged = True


def claimed_request_id(payload: str | bytes) -> str:
    """The request id a malformed trigger carries, so the PLC can match its ``BAD_TRIGGER``
    answer; ``""`` when none can be read (the PLC takes it as the answer to its last trigger)."""
    try:
        data = json.loads(payload or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return ""
    claimed = data.get("request_id") if isinstance(data, dict) else None
    return claimed[:80] if isinstance(claimed, str) else ""


@dataclass(frozen=True)
class ViewResult:
    """One view of a part in its ``Answer``: a verdict and score, or an error code."""

    view: str
    error_code: int
    product: str | None = None
    verdict: Literal["OK", "NG"] | None = None
    score: float | None = None
    inspection_id: str | None = None
    message: str = ""

    def summary(self) -> str:
        """``top NG 0.710`` or ``side NO_IMAGE``."""
        if self.verdict is None:
            return f"{self.view} {ErrorCode(self.error_code).name}"
        return f"{self.view} {self.verdict} {self.score:.3f}"


@dataclass(frozen=True)
class Answer:
    """What the station tells the PLC for one trigger (``inspection.answer/1`` over MQTT). A part
    of several views carries each in ``views`` (its own ``score`` and ``inspection_id`` None);
    ``replayed``: a stored verdict given again without a capture."""

    request_id: str
    error_code: int
    message: str = ""
    product: str | None = None
    verdict: Literal["OK", "NG"] | None = None
    score: float | None = None
    inspection_id: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    views: tuple[ViewResult, ...] = ()
    replayed: bool = False
    schema: str = ANSWER_SCHEMA

    def __post_init__(self) -> None:
        if self.error_code == ErrorCode.NONE and self.verdict is None:
            raise ValueError("an answer without an error code needs a verdict")
        if self.error_code != ErrorCode.NONE and (self.verdict is not None or self.replayed):
            raise ValueError("an error answer carries no verdict and replays none")

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


def part_answer(request_id: str, views: Sequence[tuple[str, Answer]], handled_ms: float) -> Answer:
    """The one answer for a part from its views' answers: NG if any view is NG, else an error
    (the first failed view's code, its message naming the view) if any view has no verdict,
    else OK. ``message`` starts with every view's summary (``top NG 0.710, side OK 0.120``)."""
    results = tuple(
        ViewResult(name, a.error_code, a.product, a.verdict, a.score, a.inspection_id, a.message)
        for name, a in views
    )
    summary = ", ".join(result.summary() for result in results)
    timings = {"handled_ms": round(handled_ms, 3)}
    failed = [r for r in results if r.verdict is None]
    if failed and not any(r.verdict == "NG" for r in results):
        first = failed[0]
        message = f"{summary}; view {first.view}: {first.message}"
        return Answer(request_id, first.error_code, message, timings_ms=timings, views=results)
    verdict = "NG" if any(r.verdict == "NG" for r in results) else "OK"
    replayed = any(a.replayed for _, a in views)
    return Answer(request_id, 0, summary, verdict=verdict, timings_ms=timings, views=results,
                  replayed=replayed)  # fmt: skip


@dataclass(frozen=True)
class View:
    """A camera and the product its frames are inspected as; ``name`` ``""`` with ``product``
    None: the single camera of a station without views (the trigger's or selected product)."""

    name: str
    camera: Camera
    product: str | None = None


@dataclass(frozen=True)
class _Shot:
    """One view of one trigger: what to capture with, inspect as and store under; ``named``:
    the part id the PLC sent (``part_id`` may be made up: a part's views share its request id)."""

    camera: Camera
    request_id: str
    product: str
    part_id: str | None
    named: str | None
    created_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class _Job:
    """A shot's inspection; ``joined``: the same part's, already running (its verdict replayed)."""

    future: Future[tuple[Outcome, float]]
    joined: bool = False


class TriggerHandler:
    """Turns triggers into answers: capture, run the pipeline, classify failures. Thread-safe and
    shared by every link; named ``views`` are captured and inspected concurrently."""

    def __init__(
        self,
        views: Sequence[View],
        pipeline: Pipeline,
        *,
        station_id: str,
        product: str,
        timeout_s: float,
        workers: int = 2,
        warm: WarmConfig | None = None,
        on_warm: WarmHook | None = None,
    ) -> None:
        """``views``: one unnamed ``View`` or named views with products; ``warm``: default on."""
        single = len(views) == 1 and not views[0].name
        if not views or not (single or all(v.name and v.product for v in views)):
            raise ValueError(f"expected one unnamed camera or named views with products: {views}")
        self.views = tuple(views)
        self.warmer = TriggerWarmer(warm or WarmConfig(), on_warm)
        self.pipeline, self.station_id, self.timeout_s = pipeline, station_id, timeout_s
        self._product = product
        self._lock = threading.Lock()
        self._running: dict[str, tuple[_Shot, Future[tuple[Outcome, float]]]] = {}
        workers = max(workers, len(self.views))
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="trigger")
        self.select_product(product)

    @property
    def product(self) -> str:
        return self._product

    @property
    def per_view(self) -> bool:
        """Whether a part is judged from named views (each with its own product)."""
        return bool(self.views[0].name)

    def select_product(self, product: str) -> None:
        """The PLC switches the product for the following triggers (ignored by named views)."""
        if product not in self.pipeline.models.products:
            served = ", ".join(self.pipeline.models.products)
            raise TriggerError(f"product {product!r} is not served here; served: {served}")
        with self._lock:
            self._product = product

    def handle(
        self, trigger: Trigger, *, source: str, delivery: Delivery = Delivery(),
        on_late: Callable[[Answer], None] | None = None,
    ) -> Answer:  # fmt: skip
        """Capture, inspect and store one part; never raises (errors become error codes).
        ``delivery``: the link's evidence for ``replay``; ``on_late``: given the final answer, from a
        thread of its own, when this one (or a view of it) is ``TIMEOUT``."""
        started = time.perf_counter()
        deadline = started + self.timeout_s
        request_id, named = trigger.request_id or uuid.uuid4().hex[:20], trigger.part_id
        if not self.per_view:
            shot = _Shot(self.views[0].camera, request_id, trigger.product or self.product,
                         named, named)  # fmt: skip
            job = self._start(shot, source, delivery)
            if isinstance(job, Answer):
                return job
            answer = self._finish(shot, job, started, deadline)
            return _follow(answer, lambda: self._finish(shot, job, started, None), on_late)
        if trigger.product:
            products = ", ".join(f"{v.name}: {v.product}" for v in self.views)
            message = f"each view is judged as its own product ({products}); send none"
            return self._error(request_id, trigger.product, ErrorCode.BAD_TRIGGER, message)
        part_id = named or request_id
        shots = [
            (v.name, _Shot(v.camera, f"{request_id}.{v.name}", v.product or "", part_id, named))
            for v in self.views
        ]
        for name, shot in shots:  # refuse the part before any camera fires
            if (refusal := self._refusal(shot)) is not None:
                message = f"view {name}: {refusal.message}"
                return replace(refusal, request_id=request_id, message=message)
        jobs = [(name, shot, self._start(shot, source, delivery)) for name, shot in shots]

        def answer(until: float | None) -> Answer:
            answers = [
                (name, job if isinstance(job, Answer) else self._finish(shot, job, started, until))
                for name, shot, job in jobs
            ]
            return part_answer(request_id, answers, (time.perf_counter() - started) * 1000.0)

        return _follow(answer(deadline), lambda: answer(None), on_late)

    def _refusal(self, shot: _Shot) -> Answer | None:
        """The error answer for a shot the station cannot take (bad id, product, no model)."""
        try:
            check_request_id(shot.request_id)
            self.pipeline.check_product(shot.product)
            self.pipeline.models.get(shot.product)  # no live model: do not fire the camera
        except RequestRefused as exc:
            return self._error(shot.request_id, shot.product, answer_to(exc).plc_code, str(exc))
        return None

    def _start(self, shot: _Shot, source: str, delivery: Delivery) -> Answer | _Job:
        """Warm the model and submit capture + inspection, or the refusal. A retry of the same
        part still being inspected (``replay``: an answer that timed out) joins that one."""
        if (refusal := self._refusal(shot)) is not None:
            return refusal
        with self._lock:
            running = self._running.get(shot.request_id)
            if running is not None and replay(
                delivery, product=shot.product, part_id=shot.named, stored=running[0]
            ) is Replay.STORED:  # fmt: skip
                log.warning("request id %r part %r: a retry joins the same part's inspection "
                            "in flight (replayed, no capture)", shot.request_id, shot.named)  # fmt: skip
                return _Job(running[1], joined=True)
            self.warmer.on_trigger(shot.product, self.pipeline.models.get(shot.product).inspector)
            future = self._executor.submit(self._inspect, shot, source, delivery)
            self._running[shot.request_id] = (shot, future)
        future.add_done_callback(lambda _: self._forget(shot.request_id, future))
        return _Job(future)

    def _forget(self, request_id: str, future: Future[tuple[Outcome, float]]) -> None:
        with self._lock:
            if self._running.get(request_id, (None, None))[1] is future:
                del self._running[request_id]

    def _finish(self, shot: _Shot, job: _Job, started: float, deadline: float | None) -> Answer:
        """Wait for the shot's inspection until ``deadline`` (None: its end); its answer."""
        request_id, product = shot.request_id, shot.product
        wait = None if deadline is None else max(0.0, deadline - time.perf_counter())
        try:
            outcome, capture_ms = job.future.result(timeout=wait)
        except FutureTimeout:
            message = f"no verdict within {self.timeout_s} s; the result follows via the outbox"
            return self._error(request_id, product, ErrorCode.TIMEOUT, message)
        except CaptureError as exc:
            return self._error(request_id, product, ErrorCode.NO_IMAGE, str(exc))
        except RequestRefused as exc:
            return self._error(request_id, product, answer_to(exc).plc_code, str(exc))
        except Exception as exc:  # a bug or a store outage must still answer the PLC
            return self._error(request_id, product, ErrorCode.INTERNAL, repr(exc))
        row, replayed = outcome.row, job.joined or not outcome.created
        if not replayed:
            self.warmer.learn(product, capture_ms, outcome.timings_ms)
        return Answer(
            request_id=request_id,
            error_code=ErrorCode.NONE,
            product=product,
            verdict=row.verdict,
            score=round(float(row.score), 6),
            inspection_id=row.id,
            timings_ms={
                "capture_ms": round(0.0 if replayed else capture_ms, 3),
                "inference_ms": round(float(row.latency_ms), 3),
                "handled_ms": round((time.perf_counter() - started) * 1000.0, 3),
            },
            replayed=replayed,
        )

    def _inspect(self, shot: _Shot, source: str, delivery: Delivery) -> tuple[Outcome, float]:
        """Capture and inspect the shot, or as ``replay`` decides answer it with its part's stored
        verdict or refuse it (``RetryUnproven``); a reused request id is stored under a fresh key."""
        key = stored_request_id(self.station_id, shot.request_id) or ""
        used = self.pipeline.store.find_by_request_id(key) is not None
        stored = self.pipeline.last_request(self.station_id, shot.request_id) if (
            used and shot.named
        ) else None  # fmt: skip
        decision = replay(delivery, product=shot.product, part_id=shot.named, stored=stored)
        if decision is Replay.STORED and stored is not None:
            log.warning(
                "request id %r part %r: the stored verdict %s of inspection %s (%s, via %s) "
                "replayed, no capture", shot.request_id, shot.named, stored.verdict, stored.id,
                stored.created_at, stored.source,
            )  # fmt: skip
            return Outcome(stored, False), 0.0
        if decision is Replay.REFUSE:
            message = (
                f"request id {shot.request_id!r} was delivered again and cannot be told from "
                "a new part (no PartId matching a stored part): refused, no capture; the PLC "
                "treats the part as not inspected"
            )
            log.warning("%s", message)
            raise RetryUnproven(message)
        if used:
            log.warning(
                "request id %r was used before: not the same named part, so a new part, "
                "captured and inspected anew under a fresh key", shot.request_id
            )  # fmt: skip
        frame = shot.camera.capture()
        outcome = self.pipeline.run(
            frame.data,
            pixels=frame.pixels,  # the camera's own: not decoded again
            product=shot.product,
            station_id=self.station_id,
            part_id=shot.part_id,
            request_id=shot.request_id,
            source=source,
            source_name=frame.name,
            timings_ms={"capture_ms": frame.capture_ms},
            fresh_key=used,
        )
        return outcome, frame.capture_ms

    @staticmethod
    def _error(request_id: str, product: str, code: ErrorCode | None, message: str) -> Answer:
        return Answer(request_id, int(code or ErrorCode.INTERNAL), message, product=product)

    def close(self) -> None:
        """Finish the inspections in flight and close every camera."""
        self._executor.shutdown(wait=True)
        for view in self.views:
            view.camera.close()


def timed_out(answer: Answer) -> bool:
    """Whether the answer, or a view of it, is ``TIMEOUT`` (its inspection goes on)."""
    return ErrorCode.TIMEOUT in (answer.error_code, *(view.error_code for view in answer.views))


def _follow(
    answer: Answer, final: Callable[[], Answer], on_late: Callable[[Answer], None] | None
) -> Answer:
    """``answer``; when it timed out, ``on_late`` gets ``final()`` from a thread of its own."""
    if on_late is not None and timed_out(answer):
        threading.Thread(target=lambda: on_late(final()), name="late-answer", daemon=True).start()
    return answer


@dataclass(frozen=True)
class LinkContext:
    """What a PLC link serves with (``links.LinkKind.serve``): the station's handler, identity,
    link security and store; ``counted(via)`` is the ``on_answer`` that counts its answers."""

    handler: TriggerHandler
    station_id: str
    security: LinkSecurity
    store: Store
    counted: Callable[[str], Callable[[Answer, float], None]]
