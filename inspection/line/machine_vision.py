"""OPC 40100 (OPC UA for Machine Vision) server mode: the station as a VisionSystem.

An asyncua server imports the OPC Foundation's MachineVision NodeSet (vendored in
``nodesets/``; it needs no other companion model) and serves one ``VisionSystemType`` object,
``VisionSystem``, at ``opc.tcp://<host>:<port>/inspection``. A MES or SCADA browses it without
a custom mapping:

- ``VisionStateMachine``: Preoperational -> ``SelectModeAutomatic`` -> Operational; ``Halt``
  -> Halted; ``Reset`` -> Preoperational. In Operational, ``AutomaticModeStateMachine``:
  Initialized -> (a recipe prepared) Ready -> ``StartSingleJob`` -> SingleExecution -> Ready,
  or ``StartContinuous`` -> ContinuousExecution until ``Stop`` / ``Abort`` (-> Initialized).
- ``SafetyStateManagement.ReportSafetyState``: while the environment reports its safety
  triggered, a continuous job stops after the part in flight and no job starts.
- ``RecipeManagement.PrepareRecipe``: a recipe is a product; its external id is the product
  name, its internal id the product with the live bundle as ``Version``. Preparing selects the
  product for the following jobs, as the PLC's ``Product`` signal does.
- A job is one ``TriggerHandler.handle`` per part (``MeasId`` = request id, ``PartId`` = part
  id, ``RecipeId``/``ProductId`` = product); each ends in a ``ResultReadyEventType`` event
  and a result that ``ResultManagement.GetResultById`` returns while it is among the last
  ``KEEP_RESULTS``. ``ResultState`` is the PLC's ``Result`` code (1 OK, 2 NG, 3 error);
  ``ResultContent`` holds one string: the signed ``inspection.result/1`` payload (verdict,
  score, regions, bundle id, inspection id, signature), or for an error the
  ``inspection.answer/1`` with its error code.

Security as the client mode's: Basic256Sha256 in the configured message mode with the
station's server certificate, and only clients whose certificate the trust list's CA signed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import make_dataclass, replace
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from asyncua import Client, Node, Server, ua
from asyncua.common.copy_node_util import copy_node
from asyncua.common.instantiate_util import instantiate

from inspection.line.config import LinkSecurity, MachineVisionConfig
from inspection.line.handshake import Answer, Trigger, TriggerHandler
from inspection.line.opcua import LoopThread
from inspection.line.payload import payload_of
from inspection.line.pki import LinePki
from inspection.line.security import station_uri, trust_list_validator
from inspection.station.errors import RequestRefused
from inspection.store.store import Store

log = logging.getLogger(__name__)

NODESET = Path(__file__).parent / "nodesets" / "Opc.Ua.MachineVision.NodeSet2.xml"
MV_URI = "http://opcfoundation.org/UA/MachineVision"
SOURCE = "opcua-40100"
KEEP_RESULTS = 256
# NodeIds (namespace MachineVision) of the types and of the states CurrentState.Id names
VISION_SYSTEM_TYPE, RECIPE_MANAGEMENT_TYPE, RESULT_MANAGEMENT_TYPE = 1003, 1004, 1007
SAFETY_STATE_MANAGEMENT_TYPE = 1009
AUTOMATIC_MODE_TYPE, RESULT_READY_EVENT, SELECT_MODE_AUTOMATIC = 1021, 1024, 7095
STATES = {"Preoperational": 5028, "Halted": 5029, "Error": 5030, "Operational": 5031}
AUTOMATIC_STATES = {"Initialized": 5056, "Ready": 5057, "SingleExecution": 5058,
                    "ContinuousExecution": 5059}  # fmt: skip
RUNNING = ("SingleExecution", "ContinuousExecution")
BAD_STATE = ua.StatusCode(ua.StatusCodes.BadInvalidState)
_ID = ua.VariantType.ExtensionObject
EVENT_FIELDS = {  # ResultReadyEventType's fields that this station fills, as ResultDataType's
    "ResultId": _ID, "ResultState": ua.VariantType.Int32, "MeasId": _ID, "JobId": _ID,
    "InternalRecipeId": _ID, "InternalConfigurationId": _ID, "IsPartial": ua.VariantType.Boolean,
    "CreationTime": ua.VariantType.DateTime, "ResultContent": ua.VariantType.Variant,
}  # fmt: skip


BINARY_IDS = {  # BinaryIdBaseDataType's subtypes: (DataType, its Default Binary encoding)
    "RecipeIdExternalDataType": (3002, 5002),
    "RecipeIdInternalDataType": (3013, 5268),
    "ConfigurationIdDataType": (3008, 5090),
}


def register_binary_ids(mv: int) -> None:
    """Give each BinaryIdBaseDataType subtype its own class. asyncua 2.1 makes the three
    (no fields of their own) aliases of the base: a value then travels under the base's
    encoding, and one a client sends under the subtype's (node-opcua does) is not decoded."""
    for name, (type_id, encoding) in BINARY_IDS.items():
        subtype = make_dataclass(
            name, [], bases=(ua.BinaryIdBaseDataType,),
            namespace={"data_type": ua.NodeId(type_id, mv)},
        )  # fmt: skip
        ua.register_extension_object(name, ua.NodeId(encoding, mv), subtype, ua.NodeId(type_id, mv))


async def load_client_types(client: Client) -> int:
    """The MachineVision types for an asyncua client in a process without this server; the
    namespace index. ``load_data_type_definitions`` alone leaves out every structure with a
    BinaryIdBaseDataType subtype field (``ResultDataType`` among them): load, give the
    subtypes their classes, load again (asyncua's logs of both, which this settles, muted)."""
    mv = await client.get_namespace_index(MV_URI)
    noisy = [logging.getLogger(f"asyncua.{n}") for n in ("common.structures104", "ua.uatypes")]
    for logger in noisy:
        logger.disabled = True
    try:
        await client.load_data_type_definitions()
        register_binary_ids(mv)
        await client.load_data_type_definitions()
    finally:
        for logger in noisy:
            logger.disabled = False
    return mv


def _ok(*values: ua.Variant) -> list[ua.Variant]:
    """Method outputs ending with the spec's ``Error`` (Int32, 0: none)."""
    return [*values, ua.Variant(0, ua.VariantType.Int32)]


class VisionSystemServer(LoopThread):
    """Serves the VisionSystem in its own thread and event loop (``start`` / ``stop``)."""

    thread_name, wait_s = "opcua-40100", 30.0

    def __init__(
        self,
        config: MachineVisionConfig,
        handler: TriggerHandler,
        store: Store,
        *,
        station_id: str,
        security: LinkSecurity,
        on_answer: Callable[[Answer, float], None] | None = None,
    ) -> None:
        """``store``: where a job's result row is read from to build its signed payload."""
        self.config = config
        self.handler = handler
        self.store = store
        self.station_id = station_id
        self.security = security
        self.on_answer = on_answer
        self.endpoint = f"opc.tcp://{config.host}:{config.port}/inspection"
        self._key = LinePki(security.pki_dir).signing_key(station_id) if security.on else None
        self._results: OrderedDict[str, Any] = OrderedDict()
        self._state, self._mode = "Preoperational", "Initialized"
        self._prepared: str | None = None
        self._running: asyncio.Task[None] | None = None
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
        server = Server()
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
        await self._show_state()
        return server

    async def _secure(self, server: Server) -> None:
        if not self.security.on:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
            return
        pki = LinePki(self.security.pki_dir)
        uri = station_uri(self.station_id)
        identity = pki.identity(f"station-{self.station_id}-server", uri, server=True)
        policy = ua.SecurityPolicyType
        sign = self.security.mode == "sign"
        server.set_security_policy(
            [policy.Basic256Sha256_Sign if sign else policy.Basic256Sha256_SignAndEncrypt]
        )
        await server.load_certificate(str(identity.certificate))
        await server.load_private_key(str(identity.private_key))
        validator = await trust_list_validator(pki, peer="client")
        server.set_certificate_validator(validator.validate)

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

    # VisionStateMachine
    async def _select_mode_automatic(self, _parent: ua.NodeId) -> Any:
        if self._state != "Preoperational":
            return BAD_STATE
        await self._set("Operational", "Ready" if self._prepared else "Initialized")
        return _ok()

    async def _halt(self, _parent: ua.NodeId, *_cause: ua.Variant) -> Any:
        await self._halt_jobs()
        await self._set("Halted")
        return _ok()

    async def _reset(self, _parent: ua.NodeId, *_cause: ua.Variant) -> Any:
        if self._state not in ("Halted", "Error"):
            return BAD_STATE
        await self._set("Preoperational", "Initialized")
        return _ok()

    # SafetyStateManagement: the environment's safety (a light curtain, say)
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
        return _ok()

    # RecipeManagement: a recipe is a product with its live bundle
    async def _prepare_recipe(
        self, _parent: ua.NodeId, external: ua.Variant, _internal: Any
    ) -> Any:
        if self._state in ("Halted", "Error") or self._mode in RUNNING:
            return BAD_STATE
        product = getattr(external.Value, "Id", "")
        try:
            self.handler.pipeline.check_product(product)
            bundle = self.handler.pipeline.models.get(product).bundle_id
        except RequestRefused as exc:  # not served here, or no live model: no such recipe
            log.warning("OPC 40100 PrepareRecipe %r refused: %s", product, exc)
            return ua.StatusCode(ua.StatusCodes.BadNotFound)
        self.handler.select_product(product)
        self._prepared = product
        if self._state == "Operational":
            await self._set(mode="Ready")
        internal = ua.RecipeIdInternalDataType(Id=product, Version=bundle)
        return _ok(ua.Variant(internal), ua.Variant(True, ua.VariantType.Boolean))

    async def _unprepare_recipe(
        self, _parent: ua.NodeId, external: ua.Variant, _internal: Any
    ) -> Any:
        if getattr(external.Value, "Id", "") != self._prepared or self._mode != "Ready":
            return BAD_STATE
        self._prepared = None
        await self._set(mode="Initialized")
        return _ok(ua.Variant(ua.RecipeIdInternalDataType(Id="")))

    # AutomaticModeStateMachine: jobs
    async def _start(self, _parent: ua.NodeId, *args: ua.Variant, continuous: bool) -> Any:
        if self._state != "Operational" or self._mode != "Ready" or self._safety_triggered:
            return BAD_STATE
        meas, part, recipe, product = (getattr(a.Value, "Id", "") or None for a in args[:4])
        job = meas or uuid.uuid4().hex[:20]
        trigger = Trigger(job, recipe or product or self._prepared, part)
        await self._set(mode="ContinuousExecution" if continuous else "SingleExecution")
        self._continuous = continuous
        self._running = asyncio.create_task(self._jobs(trigger))
        return _ok(ua.Variant(ua.JobIdDataType(Id=job)))

    async def _stop_jobs(self, _parent: ua.NodeId, *_cause: ua.Variant) -> Any:
        if self._mode not in RUNNING:
            return BAD_STATE
        await self._halt_jobs()
        await self._set(mode="Ready")
        return _ok()

    async def _abort(self, _parent: ua.NodeId, *_cause: ua.Variant) -> Any:
        if self._state != "Operational":
            return BAD_STATE
        await self._halt_jobs()
        self._prepared = None
        await self._set(mode="Initialized")
        return _ok()

    async def _halt_jobs(self) -> None:
        """Stop a continuous job after the part in flight (its result is still reported)."""
        running, self._running = self._running, None
        if running is not None and running is not asyncio.current_task():
            self._continuous = False
            await running

    async def _jobs(self, trigger: Trigger) -> None:
        """One part, or (continuous) one after another until stopped or an error answer."""
        count, job = 0, trigger.request_id or ""
        loop = asyncio.get_running_loop()
        while True:
            started = time.perf_counter()
            part = trigger if count == 0 else replace(trigger, request_id=f"{job}-{count}")
            answer, content = await loop.run_in_executor(None, self._inspect, part)
            if self.on_answer is not None:
                self.on_answer(answer, time.perf_counter() - started)
            await self._report(answer, job, content)
            count += 1
            if not (self._continuous and answer.verdict is not None):
                break
        if self._running is asyncio.current_task():
            self._running = None
            if self._state == "Operational":
                await self._set(mode="Ready")

    # ResultManagement
    async def _report(self, answer: Answer, job: str, content: str) -> None:
        """Keep the job's result and fire ``ResultReadyEventType``."""
        now = datetime.now(timezone.utc)
        result = ua.ResultDataType(
            ResultId=ua.ResultIdDataType(Id=answer.inspection_id or answer.request_id),
            IsPartial=False,
            ResultState=int(answer.result),
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

    async def _get_result_by_id(
        self, _parent: ua.NodeId, result_id: ua.Variant, _timeout: Any
    ) -> Any:
        result = self._results.get(getattr(result_id.Value, "Id", ""))
        if result is None:
            return ua.StatusCode(ua.StatusCodes.BadNotFound)
        return _ok(ua.Variant(0, ua.VariantType.UInt32), ua.Variant(result))
