"""The VisionSystem (OPC 40100) served in a thread and event loop of its own, at
``opc.tcp://<host>:<port>/inspection``: its state machines, recipes and jobs
(docs/line-integration.md); ``space`` builds the address space, ``results`` the results.

A recipe is a product (its live bundle the ``Version``); a job is one
``TriggerHandler.handle`` per part and never a replay (each part a new capture and ResultId);
while the environment's safety is triggered, no job starts. Every method call but
GetResultById, run or refused, goes to the signed control journal and the log.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

from asyncua import Node, ua

from inspection.line.config import MachineVisionConfig
from inspection.line.handshake import Answer, LinkContext, Trigger
from inspection.line.machine_vision.access import (
    DENIED,
    RefusalLimit,
    authorize,
    caller,
    refuse,
)
from inspection.line.machine_vision.model import RUNNING, ok
from inspection.line.machine_vision.results import JobIds, VisionResults
from inspection.line.machine_vision.space import VisionSpace, build_space
from inspection.line.opcua import LoopThread
from inspection.line.pki import LinePki
from inspection.station.errors import ErrorCode, RequestRefused

log = logging.getLogger(__name__)

SOURCE = "opcua-40100"
BAD_STATE = ua.StatusCode(ua.StatusCodes.BadInvalidState)
BAD_ARGUMENT = ua.StatusCode(ua.StatusCodes.BadInvalidArgument)


class VisionSystemServer(LoopThread):
    """Serves the VisionSystem: both state machines, the prepared recipe, the running job."""

    thread_name, wait_s = "opcua-40100", 30.0
    space: VisionSpace
    results: VisionResults

    def __init__(self, config: MachineVisionConfig, link: LinkContext) -> None:
        """The ``machine_vision`` link (``links.LinkKind.serve``)."""
        self.config, self.link, self.handler = config, link, link.handler
        self.on_answer = link.counted(SOURCE)
        self.endpoint = f"opc.tcp://{config.host}:{config.port}/inspection"
        self.users_file = config.users_file or link.security.pki_dir / "opcua-users.yaml"
        security = link.security
        self.key = LinePki(security.pki_dir).signing_key(link.station_id) if security.on else None
        self.journal = link.handler.pipeline.models.registry.journal
        self._state, self._mode = "Preoperational", "Initialized"
        self._prepared: str | None = None
        self._running: asyncio.Task[None] | None = None
        self._owner: str | None = None  # who started the running job
        self._continuous = False
        self._safety_triggered = False
        self._failed: BaseException | None = None
        self._refusals = RefusalLimit()

    def start(self) -> None:
        """Serve; raises what stopped the server from starting (a port in use, say)."""
        super().start()
        if self._failed is not None:
            raise self._failed

    async def _main(self, ready: threading.Event) -> None:
        assert self._stop is not None
        link = self.link
        try:
            self.space = await build_space(self.config, link.security, link.station_id,
                                           self.users_file, self._audit)  # fmt: skip
            self.results = VisionResults(self.space, link.store, link.station_id, self.key)
            await self.space.link(self._methods())
            await self._set()
            await self.space.server.start()
        except BaseException as exc:
            self._failed = exc
            ready.set()
            return
        log.info("OPC 40100 VisionSystem at %s", self.endpoint)
        ready.set()
        try:
            await self._stop.wait()
            await self._halt_jobs()
        finally:
            await self.space.server.stop()

    def _methods(self) -> dict[tuple[Node, str], Callable[..., Any]]:
        """The method callbacks by (parent node, method name)."""
        space = self.space
        machine, automatic, recipes = space.machine, space.automatic, space.recipes
        return {
            (machine, "SelectModeAutomatic"): self._select_mode_automatic,
            (machine, "Halt"): self._halt,
            (machine, "Reset"): self._reset,
            (automatic, "StartSingleJob"): self._start_single_job,
            (automatic, "StartContinuous"): self._start_continuous,
            (automatic, "Stop"): self._stop_jobs,
            (automatic, "Abort"): self._abort,
            (recipes, "PrepareRecipe"): self._prepare_recipe,
            (recipes, "UnprepareRecipe"): self._unprepare_recipe,
            (space.safety, "ReportSafetyState"): self._report_safety_state,
            (space.results, "GetResultById"): self.results.get_result_by_id,
        }

    async def _set(self, state: str | None = None, mode: str | None = None) -> None:
        self._state, self._mode = state or self._state, mode or self._mode
        await self.space.show_state(
            self._state, self._mode if self._state == "Operational" else None
        )

    def _audit(self, call: dict[str, Any]) -> None:
        """One control call into the station's signed control journal (a refusal flood in
        aggregate, ``RefusalLimit``), and the log; raises ``OSError`` when it cannot be written."""
        for record in self._refusals.admit(call):
            self.journal.record_control(self.link.station_id, record, self.key)
            log.info("OPC 40100 %s by %s (%s) from %s: %s %s", record["method"], record["user"],
                     record["role"], record["peer"], record["arguments"], record["result"])  # fmt: skip

    def _refuse_state(self, what: str) -> ua.StatusCode:
        refuse(caller(), what, f"in {self._state}/{self._mode}")
        return BAD_STATE

    # VisionStateMachine
    @authorize("engineer")
    async def _select_mode_automatic(self, _parent: ua.NodeId) -> Any:
        if self._state != "Preoperational":
            return self._refuse_state("SelectModeAutomatic")
        await self._set("Operational", "Ready" if self._prepared else "Initialized")
        return ok()

    @authorize("admin")
    async def _halt(self, _parent: ua.NodeId, *cause: ua.Variant) -> Any:
        """Executable in every state (OPC 40100-1 8.2.6.3; in Halted without effect): jobs end
        after the part in flight, whose result is still reported, and the recipe is released
        (from Halted only Preoperational is reached, where no recipe is loaded)."""
        if self._state != "Halted":
            await self._halt_jobs()
            self._prepared = None
            await self._set("Halted", "Initialized")
        return ok()

    @authorize("admin")
    async def _reset(self, _parent: ua.NodeId, *cause: ua.Variant) -> Any:
        """Always executable (OPC 40100-1 8.2.2.2), to Preoperational: jobs end after the part
        in flight and the recipe is unprepared (Preoperational: "no recipes are loaded").
        Results, the safety state and the journal survive it, as they survive a Halt."""
        await self._halt_jobs()
        self._prepared = None
        await self._set("Preoperational", "Initialized")
        return ok()

    # SafetyStateManagement: the environment's safety (a light curtain, say)
    @authorize("operator")
    async def _report_safety_state(
        self, _parent: ua.NodeId, triggered: ua.Variant, information: ua.Variant
    ) -> Any:
        await self.space.show_safety(triggered, information)  # shown first: no half-reported state
        self._safety_triggered = bool(triggered.Value)
        if self._safety_triggered and self._mode == "ContinuousExecution":
            await self._halt_jobs()
            await self._set(mode="Ready")
        return ok()

    # RecipeManagement: a recipe is a product with its live bundle
    @authorize("engineer")
    async def _prepare_recipe(
        self, _parent: ua.NodeId, external: ua.Variant, _internal: Any
    ) -> Any:
        if self._state != "Operational" or self._mode in RUNNING:  # Initialized or Ready
            return self._refuse_state("PrepareRecipe")
        product = getattr(external.Value, "Id", "")
        try:
            self.handler.pipeline.check_product(product)
            bundle = self.handler.pipeline.models.get(product).bundle_id
        except RequestRefused as exc:  # not served here, or no live model: no such recipe
            refuse(caller(), f"PrepareRecipe {product!r}", str(exc))
            return ua.StatusCode(ua.StatusCodes.BadNotFound)
        self.handler.select_product(product)
        self._prepared = product
        await self._set(mode="Ready")
        internal = ua.RecipeIdInternalDataType(Id=product, Version=bundle)
        return ok(ua.Variant(internal), ua.Variant(True, ua.VariantType.Boolean))

    @authorize("engineer")
    async def _unprepare_recipe(
        self, _parent: ua.NodeId, external: ua.Variant, _internal: Any
    ) -> Any:
        named = getattr(external.Value, "Id", "")
        if named != self._prepared or (self._state, self._mode) != ("Operational", "Ready"):
            return self._refuse_state("UnprepareRecipe")
        self._prepared = None
        await self._set(mode="Initialized")
        return ok(ua.Variant(ua.RecipeIdInternalDataType(Id="")))

    # AutomaticModeStateMachine: jobs
    @authorize("operator")
    async def _start_single_job(self, _parent: ua.NodeId, *args: ua.Variant) -> Any:
        return await self._start(args, continuous=False)

    @authorize("operator")
    async def _start_continuous(self, _parent: ua.NodeId, *args: ua.Variant) -> Any:
        return await self._start(args, continuous=True)

    async def _start(self, args: tuple[ua.Variant, ...], *, continuous: bool) -> Any:
        if self._state != "Operational" or self._mode != "Ready" or self._safety_triggered:
            return self._refuse_state("StartSingleJob/StartContinuous")
        meas, part, recipe, product = (getattr(a.Value, "Id", "") or None for a in args[:4])
        for kind, named in (("RecipeId", recipe), ("ProductId", product)):
            if named is not None and named != self._prepared:
                served = named in self.handler.pipeline.models.products
                why = "is not the prepared recipe" if served else "is not served here"
                refuse(caller(), f"job with {kind} {named!r}", f"{why} ({self._prepared!r})")
                return BAD_ARGUMENT
        prepared = self._prepared or ""
        ids = JobIds(uuid.uuid4().hex[:20], recipe or prepared, product or prepared, part or "")
        await self._set(mode="ContinuousExecution" if continuous else "SingleExecution")
        who = caller()
        self._owner, self._continuous = (who.name if who else None), continuous
        self._running = asyncio.create_task(
            self._jobs(Trigger(meas or ids.job, self._prepared, part), ids)
        )
        return ok(ua.Variant(ua.JobIdDataType(Id=ids.job)))

    def _refuse_foreign(self, what: str) -> ua.StatusCode | None:
        """``BadUserAccessDenied`` unless the caller started the running job or is admin."""
        who = caller()
        if who is None or (who.name != self._owner and not who.may("admin")):
            refuse(who, what, f"the running job is {self._owner!r}'s")
            return DENIED
        return None

    @authorize("operator", name="Stop")
    async def _stop_jobs(self, _parent: ua.NodeId, *_cause: ua.Variant) -> Any:
        """SingleExecution/ContinuousExecution -> Ready after the part in flight."""
        return await self._end_jobs("Stop")

    @authorize("operator")
    async def _abort(self, _parent: ua.NodeId, *_cause: ua.Variant) -> Any:
        """As ``Stop`` (SingleExecutionToReadyAbort, ContinuousExecutionToReadyAbort): a part
        in flight is never cut off, its result stays the store's; the recipe is kept."""
        return await self._end_jobs("Abort")

    async def _end_jobs(self, what: str) -> Any:
        if self._mode not in RUNNING or self._state != "Operational":
            return self._refuse_state(what)
        if (denied := self._refuse_foreign(what)) is not None:
            return denied
        await self._halt_jobs()
        await self._set(mode="Ready")
        return ok()

    async def _halt_jobs(self) -> None:
        """Stop a continuous job after the part in flight (its result is still reported)."""
        running, self._running = self._running, None
        if running is not None and running is not asyncio.current_task():
            self._continuous = False
            await running

    async def _jobs(self, first: Trigger, ids: JobIds) -> None:
        """One part, or (continuous) one after another until stopped or a failed part. A
        job that raises leaves the machine in Error."""
        count, meas = 0, first.request_id or ids.job
        while True:
            part = first if count == 0 else replace(first, request_id=f"{meas}-{count}")
            answer = await self._part(part, ids)
            if answer is None:
                return
            count += 1
            if not (self._continuous and answer.verdict is not None):
                break
        if self._running is asyncio.current_task():
            self._running = None
            if self._state == "Operational":
                await self._set(mode="Ready")

    async def _part(self, part: Trigger, ids: JobIds) -> Answer | None:
        """One part inspected and reported (a timed-out one again, under the same ResultId,
        once its verdict is stored); None: the job raised (``_fail``)."""
        loop, started = asyncio.get_running_loop(), time.perf_counter()
        result_id, reported = uuid.uuid4().hex, asyncio.Event()
        late = partial(self._late, loop, ids, result_id, reported)
        try:
            answer, content = await loop.run_in_executor(None, self._inspect, part, ids, late)
            self.on_answer(answer, time.perf_counter() - started)
            await self.results.report(answer, ids, content, answer.inspection_id or result_id)
        except Exception as exc:  # a store or payload failure
            await self._fail(part, ids, result_id, exc)
            return None
        finally:
            reported.set()
        return answer

    async def _fail(self, part: Trigger, ids: JobIds, result_id: str, exc: Exception) -> None:
        """A job that raised: a signed Failed result (``INTERNAL``) and Error."""
        log.error("OPC 40100 job %s failed", ids.job, exc_info=exc)
        if self._running is asyncio.current_task():
            self._running = None
        await self._set("Error")
        message = f"job {ids.job} failed: {exc!r}"
        answer = Answer(part.request_id or ids.job, ErrorCode.INTERNAL, message, self._prepared)
        await self.results.report(answer, ids, self.results.content(answer, ids), result_id)

    def _inspect(
        self, part: Trigger, ids: JobIds, late: Callable[[Answer], None]
    ) -> tuple[Answer, list[str]]:
        """One part (in a worker thread): its answer and its result content."""
        answer = self.handler.handle(part, source=SOURCE, on_late=late)
        return answer, self.results.content(answer, ids)

    def _late(
        self, loop: asyncio.AbstractEventLoop, ids: JobIds, result_id: str,
        reported: asyncio.Event, answer: Answer,
    ) -> None:  # fmt: skip
        """(In the late answer's thread) a timed-out part's final result, reported under the
        ResultId the MES was given once the first report is out."""
        content = self.results.content(answer, ids)

        async def report() -> None:
            await reported.wait()
            await self.results.report(answer, ids, content, result_id)

        asyncio.run_coroutine_threadsafe(report(), loop)
