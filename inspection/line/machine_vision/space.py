"""The VisionSystem's address space: a ``VisionSystemType`` object of the vendored MachineVision
NodeSet with its mandatory children under ``VisionSystem.<path>`` in the station's namespace,
the server's channels and identities, and both state machines' ``CurrentState``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncua import Node, Server, ua
from asyncua.common.copy_node_util import copy_node
from asyncua.common.instantiate_util import instantiate
from asyncua.server.event_generator import EventGenerator

from inspection.line.config import LinkSecurity, MachineVisionConfig
from inspection.line.machine_vision import access, model
from inspection.line.pki import LinePki
from inspection.line.security import station_uri, trust_list_validator

log = logging.getLogger(__name__)


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

    async def link(self, methods: Mapping[tuple[Node, str], Callable[..., Any]]) -> None:
        """Serve each ``(parent, method name)`` by its callback."""
        for (parent, name), callback in methods.items():
            self.server.link_method(await parent.get_child(f"{self.mv}:{name}"), callback)

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
    await server.import_xml(model.NODESET)
    await server.load_data_type_definitions()
    mv = await server.get_namespace_index(model.MV_URI)
    model.register_binary_ids(mv)
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
