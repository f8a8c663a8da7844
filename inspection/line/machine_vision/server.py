"""The VisionSystem: one ``VisionSystemType`` object from the OPC Foundation's MachineVision
NodeSet (vendored in ``nodesets/``; it needs no other companion model), ``VisionSystem``, at
``opc.tcp://<host>:<port>/inspection``. A MES or SCADA browses it without a custom mapping:

- ``VisionStateMachine``: Preoperational -> ``SelectModeAutomatic`` -> Operational; ``Halt``
  (always) -> Halted; ``Reset`` (always) -> Preoperational; a job that raises -> Error (an
  ``ErrorEventType`` event; ``Reset`` or ``Halt`` leave it). In Operational,
  ``AutomaticModeStateMachine``: Initialized -> (a recipe prepared) Ready -> ``StartSingleJob``
  -> SingleExecution -> Ready, or ``StartContinuous`` -> ContinuousExecution until ``Stop`` /
  ``Abort`` (-> Ready, the recipe kept); ``Stop`` / ``Abort`` elsewhere: ``BadInvalidState``.
- ``SafetyStateManagement.ReportSafetyState``: while the environment reports its safety
  triggered, a continuous job stops after the part in flight and no job starts.
- ``RecipeManagement.PrepareRecipe``: a recipe is a product; its external id is the product
  name, its internal id the product with the live bundle as ``Version``. Preparing selects the
  product for the following jobs, as the PLC's ``Product`` signal does. A job's ``RecipeId`` /
  ``ProductId``, when given, must name the prepared recipe (``BadInvalidArgument``).
- A job is one ``TriggerHandler.handle(Trigger(MeasId, product, PartId))`` per part: a reused
  MeasId is answered from the store only under the handler's retry rule (same product and
  part), otherwise it is a new part with a new ResultId. ``JobId`` is the station's (unique).
  Each part ends in a ``ResultReadyEventType`` event and a result that
  ``ResultManagement.GetResultById`` returns while it is among the last ``KEEP_RESULTS``.
  ``ResultState`` is 1 Completed (OK or NG) or 4 Failed (no verdict: also an ``ErrorEventType``
  event; the machine returns to Ready). ``ResultContent`` holds one string: the signed
  ``inspection.result/1`` payload (verdict, score, regions, bundle id, inspection id,
  signature), or for a failure the ``inspection.answer/1`` with its error code.

Who may call what: ``access`` (a session only on the configured secure channel, checked
identities, roles observer < operator < engineer < admin; a client stops or aborts only its
own job unless admin).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import replace
from datetime import datetime, timezone
from functools import partial
from typing import Any

from asyncua import Node, Server, ua
from asyncua.common.copy_node_util import copy_node
from asyncua.common.instantiate_util import instantiate
from cryptography import x509

from inspection.line.config import MachineVisionConfig
from inspection.line.handshake import Answer, LinkContext, Trigger
from inspection.line.machine_vision.access import (
    DENIED,
    GatedServer,
    ReadOnlyRuleset,
    StationUsers,
    authorize,
    caller,
    load_users,
    refuse,
)
from inspection.line.machine_vision.model import (
    AUTOMATIC_MODE_TYPE,
    AUTOMATIC_STATES,
    ERROR_EVENT,
    EVENT_FIELDS,
    MV_URI,
    NODESET,
    RECIPE_MANAGEMENT_TYPE,
    RESULT_MANAGEMENT_TYPE,
    RESULT_READY_EVENT,
    RUNNING,
    SAFETY_STATE_MANAGEMENT_TYPE,
    SELECT_MODE_AUTOMATIC,
    STATES,
    VISION_SYSTEM_TYPE,
    ok,
    register_binary_ids,
    result_state,
)
from inspection.line.opcua import LoopThread
from inspection.line.payload import payload_of
from inspection.line.pki import LinePki
from inspection.line.security import station_uri, trust_list_validator
from inspection.station.errors import RequestRefused

log = logging.getLogger(__name__)

SOURCE = "opcua-40100"
KEEP_RESULTS = 256
BAD_STATE = ua.StatusCode(ua.StatusCodes.BadInvalidState)
BAD_ARGUMENT = ua.StatusCode(ua.StatusCodes.BadInvalidArgument)


class VisionSystemServer(LoopThread):
    """Serves the VisionSystem in its own thread and event loop (``start`` / ``stop``)."""

    thread_name, wait_s = "opcua-40100", 30.0

    def __init__(self, config: MachineVisionConfig, link: LinkContext) -> None:
        """The ``machine_vision`` link (``links.LinkKind.serve``); a job's result row is read
        from ``link.store`` to build its signed payload."""
        station_id, security = link.station_id, link.security
        self.config, self.handler, self.store = config, link.handler, link.store
        self.station_id, self.security = station_id, security
        self.on_answer = link.counted(SOURCE)
        self.endpoint = f"opc.tcp://{config.host}:{config.port}/inspection"
        self.users_file = config.users_file or security.pki_dir / "opcua-users.yaml"
        self._key = LinePki(security.pki_dir).signing_key(station_id) if security.on else None
        self._results: OrderedDict[str, Any] = OrderedDict()
        self._state, self._mode = "Preoperational", "Initialized"
        self._prepared: str | None = None
        self._running: asyncio.Task[None] | None = None
        self._owner: str | None = None  # who started the running job
        self._continuous = False
        self._safety_triggered = False
        self._failed: BaseException | None = None

    def start(self) -> None:
        """Serve; raises what stopped the server from starting (a port in use, say)."""
        super().start()
        if self._failed is not None:
            raise self._failed

    async def _main(self, ready: threading.Event) -> None:
        assert self._stop is not None
        try:
            server = await self._build()
            await server.start()
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
            await server.stop()

    async def _build(self) -> Server:
        server = GatedServer()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name(f"inspection station {self.station_id} (OPC 40100)")
        await server.set_application_uri(station_uri(self.station_id))
        await self._secure(server)
        await server.import_xml(NODESET)
        await server.load_data_type_definitions()
        mv = await server.get_namespace_index(MV_URI)
        register_binary_ids(mv)
        idx = await server.register_namespace(station_uri(self.station_id))
        self.mv = mv

        async def add(parent: Node, type_id: int, name: str, ns: int = mv) -> Node:
            """An instance of ``type_id`` (mandatory children only) as ``parent``'s
            component ``name``; String NodeIds ``VisionSystem.<path>`` in our namespace."""
            path = f"{parent.nodeid.Identifier}.{name}" if ns == mv else name
            nodes = await instantiate(
                parent, server.get_node(ua.NodeId(type_id, mv)), ua.NodeId(path, idx),
                ua.QualifiedName(name, ns), ua.LocalizedText(name), instantiate_optional=False,
            )  # fmt: skip
            return nodes[0]

        system = await add(server.nodes.objects, VISION_SYSTEM_TYPE, "VisionSystem", idx)
        machine = await system.get_child(f"{mv}:VisionStateMachine")
        automatic = await add(machine, AUTOMATIC_MODE_TYPE, "AutomaticModeStateMachine")
        recipes = await add(system, RECIPE_MANAGEMENT_TYPE, "RecipeManagement")
        results = await add(system, RESULT_MANAGEMENT_TYPE, "ResultManagement")
        self.safety = await add(system, SAFETY_STATE_MANAGEMENT_TYPE, "SafetyStateManagement")
        select = await copy_node(
            machine,
            server.get_node(ua.NodeId(SELECT_MODE_AUTOMATIC, mv)),
            ua.NodeId(f"{machine.nodeid.Identifier}.SelectModeAutomatic", idx),
        )
        self.system, self.machine, self.automatic = system, machine, automatic
        server.link_method(select[0], self._select_mode_automatic)
        methods = {
            (machine, "Halt"): self._halt,
            (machine, "Reset"): self._reset,
            (automatic, "StartSingleJob"): partial(self._start, continuous=False),
            (automatic, "StartContinuous"): partial(self._start, continuous=True),
            (automatic, "Stop"): self._stop_jobs,
            (automatic, "Abort"): self._abort,
            (recipes, "PrepareRecipe"): self._prepare_recipe,
            (recipes, "UnprepareRecipe"): self._unprepare_recipe,
            (results, "GetResultById"): self._get_result_by_id,
            (self.safety, "ReportSafetyState"): self._report_safety_state,
        }
        for (parent, name), callback in methods.items():
            server.link_method(await parent.get_child(f"{mv}:{name}"), callback)
        self.events = await server.get_event_generator(ua.NodeId(RESULT_READY_EVENT, mv), system)
        self.errors = await server.get_event_generator(ua.NodeId(ERROR_EVENT, mv), system)
        await self._show_state()
        return server

    async def _secure(self, server: Server) -> None:
        """Channels: Basic256Sha256 in the configured mode (None only with security off).
        Identities: X509 and UserName with security on, Anonymous where configured."""
        users, tokens = load_users(self.users_file), []
        if self.config.anonymous is not None:
            tokens.append(ua.AnonymousIdentityToken)
        if not self.security.on:
            server.set_identity_tokens(tokens)
            server.iserver.set_user_manager(StationUsers({}, self.config.anonymous, None))
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity], ReadOnlyRuleset())
            return
        pki = LinePki(self.security.pki_dir)
        uri = station_uri(self.station_id)
        identity = pki.identity(f"station-{self.station_id}-server", uri, server=True)
        policy = ua.SecurityPolicyType
        sign = self.security.mode == "sign"
        server.set_security_policy(
            [policy.Basic256Sha256_Sign if sign else policy.Basic256Sha256_SignAndEncrypt],
            ReadOnlyRuleset(),
        )
        server.set_identity_tokens([*tokens, ua.UserNameIdentityToken, ua.X509IdentityToken])
        ca = x509.load_pem_x509_certificate(pki.ca_file.read_bytes())
        server.iserver.set_user_manager(StationUsers(users, self.config.anonymous, ca))
        await server.load_certificate(str(identity.certificate))
        await server.load_private_key(str(identity.private_key))
        validator = await trust_list_validator(pki, peer="client")
        server.set_certificate_validator(validator.validate)
        if not users and self.config.anonymous is None:
            log.warning("OPC 40100: no users in %s and anonymous off: every session is refused "
                        "(python -m inspection.line.machine_vision.access adds one)",
                        self.users_file)  # fmt: skip

    async def _show_state(self) -> None:
        """Write both state machines' ``CurrentState`` (text and ``Id``)."""
        mode = self._mode if self._state == "Operational" else None
        for machine, state, ids in ((self.machine, self._state, STATES),
                                    (self.automatic, mode, AUTOMATIC_STATES)):  # fmt: skip
            current = await machine.get_child("0:CurrentState")
            await current.write_value(ua.LocalizedText(state or ""))
            state_id = ua.NodeId(ids[state], self.mv) if state else ua.NodeId()
            await (await current.get_child("0:Id")).write_value(state_id)

    async def _set(self, state: str | None = None, mode: str | None = None) -> None:
        self._state, self._mode = state or self._state, mode or self._mode
        await self._show_state()

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
        """Always executable: jobs end after the part in flight, then Halted."""
        log.warning("OPC 40100 Halt by %s: %s", caller(), [c.Value for c in cause])
        await self._halt_jobs()
        await self._set("Halted")
        return ok()

    @authorize("admin")
    async def _reset(self, _parent: ua.NodeId, *cause: ua.Variant) -> Any:
        """Always executable: jobs end after the part in flight, then Preoperational."""
        log.warning("OPC 40100 Reset by %s: %s", caller(), [c.Value for c in cause])
        await self._halt_jobs()
        await self._set("Preoperational", "Initialized")
        return ok()

    # SafetyStateManagement: the environment's safety (a light curtain, say)
    @authorize("operator")
    async def _report_safety_state(
        self, _parent: ua.NodeId, triggered: ua.Variant, information: ua.Variant
    ) -> Any:
        self._safety_triggered = bool(triggered.Value)
        values = {"VisionSafetyTriggered": triggered, "VisionSafetyInformation": information}
        for name, value in values.items():
            await (await self.safety.get_child(f"{self.mv}:{name}")).write_value(value)
        if self._safety_triggered and self._mode == "ContinuousExecution":
            await self._halt_jobs()
            await self._set(mode="Ready")
        return ok()

    # RecipeManagement: a recipe is a product with its live bundle
    @authorize("engineer")
    async def _prepare_recipe(
        self, _parent: ua.NodeId, external: ua.Variant, _internal: Any
    ) -> Any:
        if self._state in ("Halted", "Error") or self._mode in RUNNING:
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
        if self._state == "Operational":
            await self._set(mode="Ready")
        internal = ua.RecipeIdInternalDataType(Id=product, Version=bundle)
        return ok(ua.Variant(internal), ua.Variant(True, ua.VariantType.Boolean))

    @authorize("engineer")
    async def _unprepare_recipe(
        self, _parent: ua.NodeId, external: ua.Variant, _internal: Any
    ) -> Any:
        if getattr(external.Value, "Id", "") != self._prepared or self._mode != "Ready":
            return self._refuse_state("UnprepareRecipe")
        self._prepared = None
        await self._set(mode="Initialized")
        return ok(ua.Variant(ua.RecipeIdInternalDataType(Id="")))

    # AutomaticModeStateMachine: jobs
    @authorize("operator")
    async def _start(self, _parent: ua.NodeId, *args: ua.Variant, continuous: bool) -> Any:
        if self._state != "Operational" or self._mode != "Ready" or self._safety_triggered:
            return self._refuse_state("StartSingleJob/StartContinuous")
        meas, part, recipe, product = (getattr(a.Value, "Id", "") or None for a in args[:4])
        for kind, named in (("RecipeId", recipe), ("ProductId", product)):
            if named is not None and named != self._prepared:
                served = named in self.handler.pipeline.models.products
                why = "is not the prepared recipe" if served else "is not served here"
                refuse(caller(), f"job with {kind} {named!r}", f"{why} ({self._prepared!r})")
                return BAD_ARGUMENT
        job = uuid.uuid4().hex[:20]
        trigger = Trigger(meas or job, self._prepared, part)
        await self._set(mode="ContinuousExecution" if continuous else "SingleExecution")
        who = caller()
        self._owner, self._continuous = (who.name if who else None), continuous
        self._running = asyncio.create_task(self._jobs(trigger, job))
        return ok(ua.Variant(ua.JobIdDataType(Id=job)))

    def _refuse_foreign(self, what: str) -> ua.StatusCode | None:
        """``BadUserAccessDenied`` unless the caller started the running job or is admin."""
        who = caller()
        if who is None or (who.name != self._owner and not who.may("admin")):
            refuse(who, what, f"the running job is {self._owner!r}'s")
            return DENIED
        return None

    @authorize("operator")
    async def _stop_jobs(self, _parent: ua.NodeId, *_cause: ua.Variant) -> Any:
        """SingleExecution/ContinuousExecution -> Ready after the part in flight."""
        if self._mode not in RUNNING or self._state != "Operational":
            return self._refuse_state("Stop")
        if (denied := self._refuse_foreign("Stop")) is not None:
            return denied
        await self._halt_jobs()
        await self._set(mode="Ready")
        return ok()

    @authorize("operator")
    async def _abort(self, _parent: ua.NodeId, *_cause: ua.Variant) -> Any:
        """As ``Stop`` (SingleExecutionToReadyAbort, ContinuousExecutionToReadyAbort): a part
        in flight is never cut off, its result stays the store's; the recipe is kept."""
        if self._mode not in RUNNING or self._state != "Operational":
            return self._refuse_state("Abort")
        if (denied := self._refuse_foreign("Abort")) is not None:
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

    async def _jobs(self, trigger: Trigger, job: str) -> None:
        """One part, or (continuous) one after another until stopped or a failed part. A
        job that raises leaves the machine in Error with an ``ErrorEventType`` event."""
        count, meas = 0, trigger.request_id or job
        loop = asyncio.get_running_loop()
        try:
            while True:
                started = time.perf_counter()
                part = trigger if count == 0 else replace(trigger, request_id=f"{meas}-{count}")
                answer, content = await loop.run_in_executor(None, self._inspect, part)
                self.on_answer(answer, time.perf_counter() - started)
                await self._report(answer, job, content)
                count += 1
                if not (self._continuous and answer.verdict is not None):
                    break
        except Exception as exc:  # a store or payload failure: no result to report
            log.exception("OPC 40100 job %s failed", job)
            if self._running is asyncio.current_task():
                self._running = None
            await self._set("Error")
            await self.errors.trigger(message=f"job {job} failed: {exc!r}")
            return
        if self._running is asyncio.current_task():
            self._running = None
            if self._state == "Operational":
                await self._set(mode="Ready")

    # ResultManagement
    async def _report(self, answer: Answer, job: str, content: str) -> None:
        """Keep the part's result and fire ``ResultReadyEventType`` (and, for a part without
        a verdict, ``ErrorEventType``)."""
        now = datetime.now(timezone.utc)
        result = ua.ResultDataType(
            ResultId=ua.ResultIdDataType(Id=answer.inspection_id or uuid.uuid4().hex),
            IsPartial=False,
            ResultState=result_state(answer),
            MeasId=ua.MeasIdDataType(Id=answer.request_id),
            ExternalRecipeId=ua.RecipeIdExternalDataType(Id=answer.product or ""),
            InternalRecipeId=ua.RecipeIdInternalDataType(Id=answer.product or ""),
            InternalConfigurationId=ua.ConfigurationIdDataType(Id=self.station_id),
            JobId=ua.JobIdDataType(Id=job),
            CreationTime=now,
            ResultContent=[ua.Variant(content, ua.VariantType.String)],
        )
        self._results[result.ResultId.Id] = result
        while len(self._results) > KEEP_RESULTS:
            self._results.popitem(last=False)
        for name, kind in EVENT_FIELDS.items():  # typed: the type's properties carry no value
            self.events.event.add_property(name, getattr(result, name), kind)
        await self.events.trigger(
            message=f"result {result.ResultId.Id}: {answer.verdict or 'error'}"
        )
        if answer.verdict is None:
            await self.errors.trigger(
                message=f"job {job} part {answer.request_id}: error {answer.error_code} "
                f"{answer.message}"
            )

    def _inspect(self, trigger: Trigger) -> tuple[Answer, str]:
        """One part (in a worker thread): the answer and the result content, the signed
        result payload or, when there is no verdict, the answer."""
        answer = self.handler.handle(trigger, source=SOURCE)
        if answer.inspection_id is None:
            return answer, answer.to_json()
        row = self.store.get_inspection(answer.inspection_id)
        fields = {column.name: getattr(row, column.name) for column in row.__table__.columns}
        payload = payload_of(fields, timings_ms=answer.timings_ms)
        return answer, (payload.signed(self._key) if self._key is not None else payload).to_json()

    @authorize("observer")
    async def _get_result_by_id(
        self, _parent: ua.NodeId, result_id: ua.Variant, _timeout: Any
    ) -> Any:
        result = self._results.get(getattr(result_id.Value, "Id", ""))
        if result is None:
            return ua.StatusCode(ua.StatusCodes.BadNotFound)
        return ok(ua.Variant(0, ua.VariantType.UInt32), ua.Variant(result))
