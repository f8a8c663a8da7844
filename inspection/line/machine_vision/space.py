"""The VisionSystem's address space: a ``VisionSystemType`` object of the vendored MachineVision
NodeSet with its mandatory children under ``VisionSystem.<path>`` in the station's namespace,
the server's channels and identities, and both state machines' ``CurrentState``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncua import Node, Server, ua
from asyncua.common.copy_node_util import copy_node
from asyncua.common.instantiate_util import instantiate
from asyncua.common.ua_utils import data_type_to_variant_type
from asyncua.server.event_generator import EventGenerator
from asyncua.ua.uaerrors import BadNoMatch

from inspection.line.config import LinkSecurity, MachineVisionConfig
from inspection.line.machine_vision import access, model
from inspection.line.pki import LinePki
from inspection.line.security import station_uri, trust_list_validator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Parameter:
    """One InputArgument of a method as the NodeSet types it: the built-in type it travels as
    (``Variant``: any), for a structure the class of its DataType (a subtype's value is one
    too), and whether it is an array (ValueRank 1) or a scalar (-1)."""

    name: str
    kind: ua.VariantType
    structure: type | None
    array: bool

    def admits(self, value: Any) -> bool:
        if not isinstance(value, ua.Variant):
            return False
        if self.array and value.VariantType == ua.VariantType.Null:
            return True  # a null array (no Parameters, say)
        if value.is_array != self.array:
            return False
        if self.kind == ua.VariantType.Variant:
            return True
        if self.structure is not None:  # an undecodable one stays a bare ExtensionObject
            items = value.Value if self.array else [value.Value]
            return all(isinstance(item, self.structure) for item in items)
        return value.VariantType == self.kind

    def describe(self) -> str:
        kind = self.structure.__name__ if self.structure else self.kind.name
        return f"{kind}{'[]' if self.array else ''}"


async def _parameters(method: Node) -> tuple[Parameter, ...]:
    """``method``'s InputArguments property as ``Parameter``s (none without the property)."""
    try:
        arguments = await (await method.get_child("0:InputArguments")).read_value()
    except BadNoMatch:  # a method without inputs
        return ()
    parameters = []
    for argument in arguments:
        kind = await data_type_to_variant_type(Node(method.session, argument.DataType))
        structure = ua.extension_objects_by_datatype.get(argument.DataType)
        parameters.append(Parameter(argument.Name, kind, structure, argument.ValueRank >= 1))
    return tuple(parameters)


@dataclass
class VisionSpace:
    """The served nodes: ``machine`` (VisionStateMachine), ``automatic`` (its
    AutomaticModeStateMachine), ``recipes``, ``results``, ``safety`` (the managements), and
    the generators of ``ResultReadyEventType`` (``events``) and ``ErrorEventType`` (``errors``)."""

    server: Server
    mv: int
    system: Node
    machine: Node
    automatic: Node
    recipes: Node
    results: Node
    safety: Node
    events: EventGenerator
    errors: EventGenerator
    parameters: dict[str, tuple[Parameter, ...]] = field(default_factory=dict)
    """Each linked method's InputArguments, as the NodeSet types them (by method name)."""

    async def link(self, methods: Mapping[tuple[Node, str], Callable[..., Any]]) -> None:
        """Serve each ``(parent, method name)`` by its callback, its InputArguments noted for
        ``mistyped``."""
        for (parent, name), callback in methods.items():
            method = await parent.get_child(f"{self.mv}:{name}")
            self.parameters[name] = await _parameters(method)
            self.server.link_method(method, callback)

    def mistyped(self, name: str, args: tuple[Any, ...]) -> str | None:
        """Why the input arguments of a call of method ``name`` are not the NodeSet's
        InputArguments (their count, each one's DataType and scalar or array), or None."""
        parameters = self.parameters.get(name, ())
        if len(args) != len(parameters):
            return f"{len(args)} arguments, the NodeSet's {name} takes {len(parameters)}"
        for parameter, value in zip(parameters, args, strict=True):
            if not parameter.admits(value):
                kind = type(getattr(value, "Value", value)).__name__
                return (f"argument {parameter.name}: {getattr(value, 'VariantType', '?')} "
                        f"{kind}, the NodeSet's {parameter.describe()}")  # fmt: skip
        return None

    async def show_state(self, state: str, mode: str | None) -> None:
        """Write both state machines' ``CurrentState`` (text and ``Id``); ``mode`` None: the
        automatic mode machine has no state (outside Operational)."""
        automatic = (self.automatic, mode, model.AUTOMATIC_STATES)
        for machine, current_state, ids in ((self.machine, state, model.STATES), automatic):
            current = await machine.get_child("0:CurrentState")
            await current.write_value(ua.LocalizedText(current_state or ""))
            state_id = ua.NodeId(ids[current_state], self.mv) if current_state else ua.NodeId()
            await (await current.get_child("0:Id")).write_value(state_id)

    async def show_safety(self, triggered: ua.Variant, information: ua.Variant) -> None:
        """The safety state the environment reported, as SafetyStateManagement's variables."""
        values = {"VisionSafetyTriggered": triggered, "VisionSafetyInformation": information}
        for name, value in values.items():
            await (await self.safety.get_child(f"{self.mv}:{name}")).write_value(value)


async def build_space(
    config: MachineVisionConfig, security: LinkSecurity, station_id: str, users_file: Path,
    audit: access.Audit,
) -> VisionSpace:  # fmt: skip
    """The server at ``opc.tcp://<host>:<port>/inspection`` with the VisionSystem, not started;
    its control calls go to ``audit``."""
    quotas = access.Quotas(config.subscriptions_per_session, config.subscriptions_per_user,
                           config.monitored_items_per_session, config.monitored_items_per_user)  # fmt: skip
    server = access.GatedServer(quotas, audit)
    await server.init()
    server.set_endpoint(f"opc.tcp://{config.host}:{config.port}/inspection")
    server.set_server_name(f"inspection station {station_id} (OPC 40100)")
    await server.set_application_uri(station_uri(station_id))
    await _secure(server, config, security, station_id, users_file)
    await server.import_xml(xmlstring=model.nodeset_xml())
    await server.load_data_type_definitions()
    mv = await server.get_namespace_index(model.MV_URI)
    idx = await server.register_namespace(station_uri(station_id))

    async def add(parent: Node, type_id: int, name: str, ns: int = mv) -> Node:
        """An instance of ``type_id`` (mandatory children only) as ``parent``'s component
        ``name``."""
        path = f"{parent.nodeid.Identifier}.{name}" if ns == mv else name
        nodes = await instantiate(
            parent, server.get_node(ua.NodeId(type_id, mv)), ua.NodeId(path, idx),
            ua.QualifiedName(name, ns), ua.LocalizedText(name), instantiate_optional=False,
        )  # fmt: skip
        return nodes[0]

    system = await add(server.nodes.objects, model.VISION_SYSTEM_TYPE, "VisionSystem", idx)
    machine = await system.get_child(f"{mv}:VisionStateMachine")
    await copy_node(
        machine,
        server.get_node(ua.NodeId(model.SELECT_MODE_AUTOMATIC, mv)),
        ua.NodeId(f"{machine.nodeid.Identifier}.SelectModeAutomatic", idx),
    )
    return VisionSpace(
        server, mv, system, machine,
        automatic=await add(machine, model.AUTOMATIC_MODE_TYPE, "AutomaticModeStateMachine"),
        recipes=await add(system, model.RECIPE_MANAGEMENT_TYPE, "RecipeManagement"),
        results=await add(system, model.RESULT_MANAGEMENT_TYPE, "ResultManagement"),
        safety=await add(system, model.SAFETY_STATE_MANAGEMENT_TYPE, "SafetyStateManagement"),
        events=await server.get_event_generator(ua.NodeId(model.RESULT_READY_EVENT, mv), system),
        errors=await server.get_event_generator(ua.NodeId(model.ERROR_EVENT, mv), system),
    )  # fmt: skip


async def _secure(
    server: Server, config: MachineVisionConfig, security: LinkSecurity, station_id: str,
    users_file: Path,
) -> None:  # fmt: skip
    """Channels: Basic256Sha256 in the configured mode (None only with security off).
    Identities: X509 with security on, UserName too when it encrypts, Anonymous where
    configured."""
    users, tokens = access.load_users(users_file), []
    if config.anonymous is not None:
        tokens.append(ua.AnonymousIdentityToken)
    if not security.on:
        server.set_identity_tokens(tokens)
        server.iserver.set_user_manager(access.StationUsers({}, config.anonymous))
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity], access.ReadOnlyRuleset())
        return
    pki = LinePki(security.pki_dir)
    identity = pki.identity(f"station-{station_id}-server", station_uri(station_id), server=True)
    policy = ua.SecurityPolicyType
    sign = security.mode == "sign"
    server.set_security_policy(
        [policy.Basic256Sha256_Sign if sign else policy.Basic256Sha256_SignAndEncrypt],
        access.ReadOnlyRuleset(),
    )
    passwords = [] if sign else [ua.UserNameIdentityToken]  # never over a readable channel
    server.set_identity_tokens([*tokens, *passwords, ua.X509IdentityToken])
    server.iserver.set_user_manager(access.StationUsers(users, config.anonymous, pki))
    await server.load_certificate(str(identity.certificate))
    await server.load_private_key(str(identity.private_key))
    validator = await trust_list_validator(pki, peer="client")
    server.set_certificate_validator(validator.validate)
    if not users and config.anonymous is None:
        log.warning("OPC 40100: no users in %s and anonymous off: every session is refused "
                    "(python -m inspection.line.machine_vision.access adds one)",
                    users_file)  # fmt: skip
