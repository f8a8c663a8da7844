"""Line-station configuration (``configs/line.yaml``): camera, triggers, sinks, as frozen types."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from inspection.core.config import from_mapping, read_yaml
from inspection.core.errors import ConfigError, RegistryError
from inspection.core.model_record import check_name
from inspection.line.links import LINKS, link_kind
from inspection.line.payload import SIGNED_RECORD
from inspection.station.config import (
    StationCoreConfig,
    check_moved_keys,
    check_port,
    with_config_folder,
)

PLC_USER, MES_USER = "plc", "mes"
"""MQTT users of the PLC and the MES; a station logs in as its station_id, so these two are
not station ids (the broker's ACL would grant that station the PLC's or the MES's rights)."""


@dataclass(frozen=True)
class LinkSecurity:
    """How the links to the PLC, the broker and the MES are protected (secure by default):
    ``sign_and_encrypt`` / ``sign`` (OPC UA Basic256Sha256 in that mode with trust lists, MQTT
    over TLS with passwords and ACLs, signed webhooks and results) or ``none`` (plaintext,
    announced at start-up). The material lives in ``pki_dir`` (``inspection.line.pki``)."""

    mode: Literal["sign_and_encrypt", "sign", "none"] = "sign_and_encrypt"
    pki_dir: Path = Path("var/line-pki")

    @property
    def on(self) -> bool:
        return self.mode != "none"


def check_bound(where: str, config: object, bound: int, *names: str, strict: bool = False) -> None:
    """Each of ``config``'s ``names`` that is set must be >= ``bound`` (> with ``strict``)."""
    for name in names:
        value = getattr(config, name)
        if value is not None and (value <= bound if strict else value < bound):
            relation = ">" if strict else ">="
            raise ConfigError(f"{where}: {name} must be {relation} {bound}, got {value}")


@dataclass(frozen=True)
class SinkConfig:
    """Where results go; ``kind`` picks the fields that apply: ``mqtt`` (``host``, ``port``,
    ``topic`` with ``{station_id}``; QoS 1), ``opcua`` (``endpoint``, ``node_id`` of a String
    variable) or ``webhook`` (``url``: a JSON POST with an ``Idempotency-Key``, signed with
    security on: ``inspection.line.security.verify_webhook``)."""

    name: str
    kind: Literal["mqtt", "opcua", "webhook"]
    host: str = "127.0.0.1"
    port: int = 8883
    topic: str = "inspection/{station_id}/result"
    endpoint: str | None = None
    node_id: str | None = None
    url: str | None = None
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        needed = {"opcua": ("endpoint", "node_id"), "webhook": ("url",)}.get(self.kind, ())
        for key in needed:
            if not getattr(self, key):
                raise ConfigError(f"sink {self.name!r} ({self.kind}) needs '{key}'")
        check_bound(f"sink {self.name!r}", self, 0, "timeout_s", strict=True)
        check_port(f"sink {self.name!r}: port", self.port)


@dataclass(frozen=True)
class PublisherConfig:
    """Outbox draining: batch size, idle poll and retry backoff (doubling, capped, jittered)."""

    batch: int = 50
    poll_s: float = 0.5
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0

    def __post_init__(self) -> None:
        check_bound("publisher", self, 1, "batch")
        check_bound("publisher", self, 0, "poll_s", strict=True)
        if not 0 < self.backoff_initial_s <= self.backoff_max_s:
            raise ConfigError(
                "publisher: need 0 < backoff_initial_s <= backoff_max_s, got "
                f"{self.backoff_initial_s} and {self.backoff_max_s}"
            )


RETRY_S = 10.0
"""How long after a cycle began a PLC's retry of it may get its stored verdict (seconds): beyond
the takt budget and a reconnect, well short of the next round of a wrapping request counter."""


@dataclass(frozen=True)
class OpcUaTriggerConfig:
    """PLC handshake over OPC UA, the station a client of the PLC's server: signals
    ``ns=<namespace index>;s=<node_prefix>.<Signal>`` (docs/line-integration.md)."""

    enabled: bool = False
    endpoint: str = "opc.tcp://127.0.0.1:4840"
    namespace: str = "urn:inspection:plc"
    node_prefix: str = "Station"
    sampling_ms: float = 10.0  # subscription publishing interval (the PLC's side may round up)
    heartbeat_ms: float = 250.0  # ``Heartbeat`` counts up this often while the station serves
    retry_s: float = RETRY_S  # a retry of an unacknowledged cycle replays within this (``Cycles``)

    def __post_init__(self) -> None:
        check_bound("opcua", self, 0, "sampling_ms")
        check_bound("opcua", self, 0, "heartbeat_ms", "retry_s", strict=True)


@dataclass(frozen=True)
class PolledLinkConfig:
    """What every polled PLC link shares: the PLC at ``host``:``port``, its block read every
    ``poll_ms``, ``Heartbeat`` counted up every ``heartbeat_ms``, and a session that fails before
    serving retried after a doubling back-off (``store.outbox.backoff_s``)."""

    host: str = "127.0.0.1"
    port: int = 0
    poll_ms: float = 10.0
    heartbeat_ms: float = 250.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    retry_s: float = RETRY_S  # a retry of an unacknowledged cycle replays within this (``Cycles``)

    link: ClassVar[str]  # the section's name, in messages

    def __post_init__(self) -> None:
        check_port(f"{self.link}: port", self.port)
        check_bound(self.link, self, 0, "poll_ms", "heartbeat_ms", "retry_s", strict=True)
        if not 0 < self.backoff_initial_s <= self.backoff_max_s:
            raise ConfigError(
                f"{self.link}: need 0 < backoff_initial_s <= backoff_max_s, got "
                f"{self.backoff_initial_s} and {self.backoff_max_s}"
            )


@dataclass(frozen=True)
class S7Config(PolledLinkConfig):
    """PLC handshake over Siemens S7 (``inspection.line.registers``): the signals in data block
    ``db`` of the PLC at ``host`` (``rack``/``slot`` of its CPU); no authentication."""

    enabled: bool = False
    port: int = 102
    rack: int = 0
    slot: int = 1
    db: int = 100
    link: ClassVar[str] = "s7"


@dataclass(frozen=True)
class ModbusConfig(PolledLinkConfig):
    """PLC handshake over Modbus TCP (``inspection.line.registers``): the signals in the holding
    registers from ``address`` of unit ``unit`` at ``host``; no authentication."""

    enabled: bool = False
    port: int = 502
    unit: int = 1
    address: int = 0
    link: ClassVar[str] = "modbus"


@dataclass(frozen=True)
class MqttTriggerConfig:
    """Handshake over MQTT (``inspection.line.mqtt``), apart from the mqtt result sinks."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8883
    topic_prefix: str = "inspection/{station_id}"
    retry_s: float = RETRY_S  # a redelivery (DUP) replays a row stored at most this long ago

    def __post_init__(self) -> None:
        check_port("mqtt: port", self.port)
        check_bound("mqtt", self, 0, "retry_s", strict=True)


OpcRole = Literal["observer", "operator", "engineer", "admin"]
"""An OPC 40100 client's role; each has the rights of those before it (docs/line-integration.md)."""


@dataclass(frozen=True)
class MachineVisionConfig:
    """OPC 40100 (OPC UA for Machine Vision) server mode: the station serves a VisionSystem at
    ``opc.tcp://<host>:<port>/inspection`` (``inspection.line.machine_vision``), secured as
    ``security`` says. ``users_file``: the clients' roles and credentials (default
    ``<security.pki_dir>/opcua-users.yaml``); ``anonymous``: the role of a session without a user
    (default none: refused); the subscription and monitored-item quotas per session and per
    user."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 4843
    users_file: Path | None = None
    anonymous: OpcRole | None = None
    subscriptions_per_session: int = 5
    subscriptions_per_user: int = 10
    monitored_items_per_session: int = 200
    monitored_items_per_user: int = 400

    def __post_init__(self) -> None:
        check_port("machine_vision: port", self.port)
        if not 1 <= self.subscriptions_per_session <= self.subscriptions_per_user <= 1000:
            raise ConfigError(
                "machine_vision: need 1 <= subscriptions_per_session <= subscriptions_per_user "
                f"<= 1000, got {self.subscriptions_per_session} / {self.subscriptions_per_user}"
            )
        if not 1 <= self.monitored_items_per_session <= self.monitored_items_per_user <= 100_000:
            raise ConfigError(
                "machine_vision: need 1 <= monitored_items_per_session <= "
                f"monitored_items_per_user <= 100000, got {self.monitored_items_per_session} / "
                f"{self.monitored_items_per_user}"
            )


@dataclass(frozen=True)
class CameraConfig:
    """``file``: images of ``path`` in name order (``loop`` restarts); ``genicam``: through
    harvesters and the vendor's GenTL producer (``cti``), ``device`` its serial (default: the
    first). ``trigger``: ``software`` fires per part, ``free_run`` takes the stream's second frame
    after the trigger. ``exposure_us``, ``gain_db`` and ``features`` set SFNC features, in order."""

    kind: Literal["file", "genicam"] = "file"
    path: Path | None = None
    loop: bool = True
    cti: Path | None = None
    device: str | None = None
    timeout_s: float = 2.0
    trigger: Literal["software", "free_run"] = "software"
    exposure_us: float | None = None
    gain_db: float | None = None
    features: dict[str, str | int | float | bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind == "file" and self.path is None:
            raise ConfigError("camera: kind 'file' needs 'path' (a folder of images)")
        if self.kind == "genicam" and self.cti is None:
            raise ConfigError("camera: kind 'genicam' needs 'cti' (the vendor's GenTL producer)")
        check_bound("camera", self, 0, "timeout_s", "exposure_us", strict=True)

    def genicam_features(self) -> dict[str, str | int | float | bool]:
        """The SFNC features to write, in order: trigger mode, exposure, gain, the rest."""
        trigger = {"TriggerSelector": "FrameStart", "TriggerMode": "On",
                   "TriggerSource": "Software"} if self.trigger == "software" else {}  # fmt: skip
        optional = {"ExposureTime": self.exposure_us, "Gain": self.gain_db}
        return trigger | {k: v for k, v in optional.items() if v is not None} | self.features


_VIEW_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class ViewConfig:
    """One camera of a part judged by several (``LineConfig.views``): its frames are inspected as
    ``product`` and stored with request id ``<trigger's request id>.<name>``."""

    name: str
    camera: CameraConfig
    product: str

    def __post_init__(self) -> None:
        if not _VIEW_NAME_RE.match(self.name):
            raise ConfigError(
                f"view name {self.name!r} is invalid: use 1-32 letters, digits, '_' or '-', "
                "starting with a letter or digit"
            )


@dataclass(frozen=True)
class WarmConfig:
    """Warm-on-trigger (``runtime.warmup``): one throw-away inference per trigger, while the camera
    exposes, so a part on a slow line is not inspected cold; skipped within ``idle_ms`` of the last
    inference, and cancelled by the part's own."""

    enabled: bool = True
    idle_ms: float = 20.0
    timing: Literal["trigger", "learned"] = "trigger"
    """``trigger``: start at once; ``learned``: so that it ends ``margin_ms`` before the part's
    inference is due, from running means of the line's lead and inference times."""
    margin_ms: float = 1.0

    def __post_init__(self) -> None:
        check_bound("warm_on_trigger", self, 0, "idle_ms", "margin_ms")


@dataclass(frozen=True)
class LineConfig:
    """One line station: camera -> inspect -> store (+ outbox) -> sinks, driven by the PLC;
    ``core`` is shared with ``configs/station.yaml``. One ``camera`` or several ``views``."""

    station_id: str
    core: StationCoreConfig
    camera: CameraConfig | None = None
    views: tuple[ViewConfig, ...] = ()
    default_product: str | None = None
    inspect_timeout_s: float = 5.0
    image_base_url: str = ""
    metrics_port: int | None = None
    sinks: tuple[SinkConfig, ...] = ()
    publisher: PublisherConfig = field(default_factory=PublisherConfig)
    links: dict[str, Any] = field(default_factory=dict)
    """The PLC links' sections by name (``opcua``, ``s7``... each a top-level key of the file;
    ``links.LINKS`` has them all); a link without a section is off."""
    warm_on_trigger: WarmConfig = field(default_factory=WarmConfig)
    security: LinkSecurity = field(default_factory=LinkSecurity)

    def __post_init__(self) -> None:
        try:
            check_name("station_id", self.station_id)
        except RegistryError as exc:
            raise ConfigError(f"line config: {exc}") from exc
        if self.station_id in (PLC_USER, MES_USER):
            raise ConfigError(
                f"line config: station_id {self.station_id!r} is the MQTT user of the "
                f"{self.station_id.upper()}; name the station otherwise"
            )
        if self.product not in self.core.products:
            raise ConfigError(f"line config: default_product {self.product!r} is not in products")
        names = [sink.name for sink in self.sinks]
        if len(set(names)) != len(names) or SIGNED_RECORD in names:
            raise ConfigError(
                f"line config: sink names must be unique and not {SIGNED_RECORD!r}, got {names}"
            )
        self._check_views()
        check_bound("line config", self, 0, "inspect_timeout_s", strict=True)
        if self.metrics_port is not None:
            check_port("line config: metrics_port", self.metrics_port)
        for name, section in self.links.items():
            if not isinstance(section, wanted := link_section(name)):
                raise ConfigError(f"line config: {name}: expected {wanted.__name__}, got {section}")

    def _check_views(self) -> None:
        if (self.camera is None) == (not self.views):
            raise ConfigError("line config: give either 'camera' or 'views' (several cameras)")
        names = [view.name for view in self.views]
        if len(set(names)) != len(names):
            raise ConfigError(f"line config: view names must be unique, got {names}")
        for view in self.views:
            if view.product not in self.core.products:
                raise ConfigError(
                    f"line config: view {view.name!r}: product {view.product!r} is not in "
                    f"products {list(self.core.products)}"
                )

    def link(self, name: str) -> Any:
        """The section of the PLC link ``name``, its defaults (off) when the file has none."""
        return self.links.get(name) or link_section(name)()

    @property
    def product(self) -> str:
        """The product inspected when the trigger names none."""
        return self.default_product or self.core.products[0]


def link_section(name: str) -> type:
    """The config type of the PLC link ``name``; an unknown name is a ``ConfigError``."""
    try:
        return link_kind(name).load("section")
    except ValueError as exc:
        raise ConfigError(f"line config: {exc}") from exc


def load_line_config(path: str | Path) -> LineConfig:
    """Read and validate a line-station YAML file; its configs folder is the file's."""
    data = read_yaml(path)
    check_moved_keys(data, str(path))
    links = {
        name: from_mapping(link_section(name), data.pop(name), where=f"{path}.{name}")
        for name in LINKS
        if name in data
    }
    config = from_mapping(LineConfig, data | {"links": links}, where=str(path))
    return with_config_folder(config, path)
