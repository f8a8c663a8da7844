"""The registry of PLC links: every way a PLC triggers the station, by its config section's name.

A link lives in one module and is registered once (``register``); the line config, the station
and ``inspection station trigger --via`` look it up here and switch on no protocol name.
``LinkKind``'s parts may be ``"module:attribute"`` strings, imported on first use, so a config
or the CLI loads no protocol library it does not serve.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


class Link(Protocol):
    """A served PLC link: answers triggers from ``start`` until ``stop``."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class LinkKind:
    """``section``: the link's config type (with ``enabled``) under the YAML key ``name``;
    ``serve(section, handshake.LinkContext) -> Link``: the station's side; ``trigger(line_config,
    *, request_id, product, part_id, timeout_s) -> Answer``: one trigger as the PLC fires it
    (``station trigger --via``); ``plc(*, scan_s)``: a memory-block link's PLC for tests and
    benches; ``reads_payloads``: it serves each result's stored payload (``SIGNED_RECORD``)."""

    name: str
    section: type | str
    serve: Callable[..., Link] | str
    trigger: Callable[..., Any] | str | None = None
    trigger_help: str = ""
    plc: type | str | None = None
    reads_payloads: bool = False

    def load(self, part: str) -> Any:
        """``section``, ``serve``, ``trigger`` or ``plc``, imported when given as
        ``"module:attribute"``."""
        value = getattr(self, part)
        if not isinstance(value, str):
            return value
        module, _, attribute = value.partition(":")
        return getattr(importlib.import_module(module), attribute)


LINKS: dict[str, LinkKind] = {}


def register(kind: LinkKind) -> LinkKind:
    """Add ``kind``; a name taken already raises ``ValueError``."""
    if kind.name in LINKS:
        raise ValueError(f"a PLC link named {kind.name!r} is registered already")
    LINKS[kind.name] = kind
    return kind


def register_plcs() -> dict[str, type]:
    """The memory-block links' PLCs for tests and benches (``LinkKind.plc``), by link name."""
    return {name: kind.load("plc") for name, kind in LINKS.items() if kind.plc is not None}


def link_kind(name: str) -> LinkKind:
    """The link ``name``; an unknown one raises ``ValueError`` listing the known."""
    if name not in LINKS:
        raise ValueError(f"unknown PLC link {name!r}; known: {', '.join(LINKS)}")
    return LINKS[name]


_L = "inspection.line"
for _kind in (  # the built-in links
    LinkKind("mqtt", f"{_L}.config:MqttTriggerConfig", f"{_L}.mqtt:MqttHandshake",
             f"{_L}.plc:mqtt_trigger", "publish a trigger"),
    LinkKind("opcua", f"{_L}.config:OpcUaTriggerConfig", f"{_L}.opcua:OpcUaHandshake",
             f"{_L}.plc:opcua_trigger", "write the PLC's Trigger node, as the PLC would"),
    LinkKind("machine_vision", f"{_L}.config:MachineVisionConfig",
             f"{_L}.machine_vision.server:VisionSystemServer", reads_payloads=True),
    LinkKind("s7", f"{_L}.config:S7Config", f"{_L}.registers:serve_s7",
             plc=f"{_L}.softplc:S7Plc"),
    LinkKind("modbus", f"{_L}.config:ModbusConfig", f"{_L}.registers:serve_modbus",
             plc=f"{_L}.softplc:ModbusPlc"),
    LinkKind("enip", f"{_L}.enip:EnipConfig", f"{_L}.enip:serve", f"{_L}.enip:enip_trigger",
             "write the PLC's Trigger tag, as the PLC program would", f"{_L}.enip:EnipPlc"),
):  # fmt: skip
    register(_kind)
