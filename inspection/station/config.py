"""The ``core:`` section shared by ``configs/station.yaml`` and ``configs/line.yaml``: products,
registry, results store, image limits and which bundles may load. Secure by default: a station
starts only with the site's keys pinned by fingerprint (``signing_keys``; docs/security.md) or
an explicit ``allow_unsigned_bundles: true``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import yaml
from PIL import Image

from inspection.core.config import configs_folder, folder_of, from_mapping
from inspection.core.errors import ConfigError, RegistryError
from inspection.core.images import DEFAULT_MAX_SIDE, STATION_FORMATS
from inspection.core.input_domain import InputCheck, input_check_mode
from inspection.core.model_record import check_name
from inspection.core.signing import Keyring, PinnedKey, SigningError
from inspection.runtime.bounds import BoundsConfig

log = logging.getLogger(__name__)

UNSIGNED_WARNING = (
    "allow_unsigned_bundles: true: bundle signatures are NOT checked; an altered or unsigned "
    "bundle will be served. Pin signing_keys on every production station."
)
HOW_TO_PIN = (
    "run `inspection keys init` on the set-up machine (it pins its keys by fingerprint in the "
    "station configs beside the site config), or on a station `inspection keys pin KEY.pub "
    "--expect sha256:... -c CONFIG` with the fingerprint `inspection keys show` prints there"
)


@dataclass(frozen=True)
class CentralConfig:
    """Where the station forwards its results after committing them (``store.forward``): the
    central PostgreSQL as its own role (``db station-role``) and the central blob folder."""

    url: str
    blob_dir: Path
    batch: int = 200
    alarm_after_seconds: float = 300.0
    """Raise the backlog alarm (metrics, ``station status``) when the oldest result waiting
    for the central store is older than this."""
    ca_file: Path | None = None
    """The site CA (PEM) that signed the central PostgreSQL's certificate: the link is TLS
    with ``sslmode=verify-full`` (``store.central_link``)."""
    allow_plaintext: bool = False
    """``true``: no verified TLS (development only; logged as a warning at each start)."""

    def __post_init__(self) -> None:
        if not self.url.startswith("postgresql"):
            raise ConfigError("core: central.url must be a postgresql+psycopg:// URL")
        if self.batch < 1 or self.alarm_after_seconds <= 0:
            raise ConfigError("core: central.batch must be >= 1, alarm_after_seconds > 0")


@dataclass(frozen=True)
class StationCoreConfig:
    """What every station front door shares (paths relative to the working directory)."""

    products: tuple[str, ...]
    store_url: str = "sqlite:///var/inspection.db"
    blob_dir: Path = Path("var/blobs")
    central: CentralConfig | None = None
    """The central store the station forwards to; ``None``: ``store_url`` is the only store."""
    registry_dir: Path = Path("var/registry")
    max_pixels: int = 25_000_000
    max_side: int = DEFAULT_MAX_SIDE
    image_formats: tuple[str, ...] = STATION_FORMATS
    registry_poll_seconds: float = 2.0
    signing_keys: tuple[PinnedKey, ...] = ()
    """The keys this station trusts, by fingerprint (``inspection keys init|pin|rotate``)."""
    revoked: tuple[str, ...] = ()
    """Key fingerprints and bundles (``<product>/<bundle_id>``) refused even when validly
    signed (``inspection keys revoke``); the last good one keeps serving."""
    trust_file: Path | None = None
    """A file (relative to the config's folder) whose ``core:`` holds ``signing_keys`` and
    ``revoked`` for this config (``inspection keys`` writes there; the configs stay as written)."""
    bundle_public_key: Path | None = None
    """Before keys were pinned by fingerprint: a path alone. Refused (``HOW_TO_PIN``)."""
    allow_unsigned_bundles: bool = False
    """``true``: serve bundles without checking signatures (development only; logged loudly)."""
    tune_on_load: bool = True
    """Without a tuning record, time the live model's gated bundles here and serve the fastest
    (``runtime.tuning``)."""
    bounds: BoundsConfig = field(default_factory=BoundsConfig)
    """Working size, latency budget (per product) and stored images (``runtime.bounds``)."""
    validation_images: dict[str, Path] = field(default_factory=dict)
    """Per product, a folder of this station's validation images (MVTec layout) on which a
    bundle whose golden outputs drift here is re-calibrated (``runtime.recalibration``)."""
    input_check: InputCheck = "refuse"
    """Images unlike the bundle's training images (``core.input_domain``): ``refuse`` (an
    error, never a verdict), ``warn`` (judge, log and count) or ``"off"`` (quoted in YAML)."""
    inference_threads: int | None = None
    """OpenVINO threads per inference; None: OpenVINO's choice (every core). ``1`` suits
    several station processes sharing a few cores."""
    configs_dir: Path | None = None
    """The station's own configs (``refine.yaml``); default: the folder of the config file the
    section was read from (``with_config_folder``)."""

    def __post_init__(self) -> None:
        try:
            input_check_mode(self.input_check)
        except ValueError as exc:
            raise ConfigError(f"core: {exc}") from exc
        if not self.products:
            raise ConfigError("core: 'products' must list at least one product")
        for product in self.products:
            try:
                check_name("product", product)
            except RegistryError as exc:
                raise ConfigError(f"core: products: {exc}") from exc
        for name in ("max_pixels", "max_side"):
            if getattr(self, name) < 1:
                raise ConfigError(f"core: {name} must be >= 1, got {getattr(self, name)}")
        unknown = sorted(set(self.bounds.products) - set(self.products))
        if unknown:
            raise ConfigError(
                f"core: bounds.products {unknown} are not in products {list(self.products)}"
            )
        stray = sorted(set(self.validation_images) - set(self.products))
        if stray:
            raise ConfigError(
                f"core: validation_images names {stray}, which are not in products "
                f"{list(self.products)}"
            )
        object.__setattr__(
            self, "validation_images", {k: Path(v) for k, v in self.validation_images.items()}
        )
        if self.inference_threads is not None and self.inference_threads < 1:
            raise ConfigError(f"core: inference_threads must be >= 1, got {self.inference_threads}")
        if self.registry_poll_seconds <= 0:
            raise ConfigError("core: registry_poll_seconds must be > 0 seconds")
        check_formats(self.image_formats)
        if self.bundle_public_key is not None:
            raise ConfigError(
                f"core: bundle_public_key pins {self.bundle_public_key} by path only, and a path "
                "is not trust (whoever writes the file replaces the key). Pin it by "
                f"fingerprint: {HOW_TO_PIN}"
            )
        if self.signing_keys and self.allow_unsigned_bundles:
            raise ConfigError(
                "core: set either signing_keys or allow_unsigned_bundles: true, not both"
            )

    @property
    def configs(self) -> Path:
        """``configs_dir``; a section built without a file: ``core.config.default_configs_dir()``."""
        return configs_folder(self.configs_dir)


class HasCore(Protocol):
    """A station or line config: a frozen dataclass with the ``core:`` section."""

    core: StationCoreConfig


C = TypeVar("C", bound=HasCore)


def with_config_folder(config: C, config_file: str | Path) -> C:
    """``config`` as read from ``config_file``: its configs folder defaults to the file's, and
    the pins of its ``trust_file`` (when it names one) are read in."""
    core = config.core
    if core.configs_dir is None:
        core = dataclasses.replace(core, configs_dir=folder_of(config_file))
    if core.trust_file is not None:
        if core.signing_keys or core.revoked:
            raise ConfigError(
                f"{config_file}: core: pins and revocations live in trust_file "
                f"{core.trust_file}; move signing_keys and revoked there"
            )
        path = folder_of(config_file) / core.trust_file
        trust = _trust_in(path)
        core = dataclasses.replace(
            core, trust_file=path, signing_keys=trust.signing_keys, revoked=trust.revoked
        )
    return dataclasses.replace(config, core=core)  # type: ignore[type-var]


def check_registry_dir(config: StationCoreConfig) -> None:
    """Refuse to start on a ``registry_dir`` that is not a folder (a typo would read as "no live
    bundle"); at start, not on load, since ``station sync`` fills a folder not there yet."""
    if not config.registry_dir.is_dir():
        raise ConfigError(
            f"core: registry_dir {config.registry_dir.resolve()} is not a directory; fix the "
            "path, or fill it with `inspection station sync`"
        )


def check_port(where: str, port: int) -> None:
    """A TCP port must be in 1..65535; ``where`` names the key (``"mqtt: port"``)."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"{where} must be in 1..65535, got {port}")


def check_formats(formats: tuple[str, ...]) -> None:
    """Every name must be a format Pillow can open; an empty list is refused."""
    Image.init()
    known = sorted(Image.OPEN)
    if not formats:
        raise ConfigError("core: image_formats must list at least one format")
    for name in formats:
        if name not in Image.OPEN:
            raise ConfigError(f"core: image_formats: unknown format {name!r}; Pillow reads {known}")


CORE_KEYS = frozenset(StationCoreConfig.__dataclass_fields__)


def check_moved_keys(data: Mapping[str, object], where: str) -> None:
    """Name the top-level keys of a config written before the ``core:`` section existed."""
    moved = sorted(CORE_KEYS & set(data))
    if moved:
        raise ConfigError(
            f"{where}: {', '.join(map(repr, moved))} now belong(s) under 'core:' (the section "
            "both station configs share); move them there, see configs/station.yaml"
        )


def pinned_key(config: StationCoreConfig) -> Keyring | None:
    """The keys the station trusts, each checked against its pinned fingerprint (``ConfigError``
    saying how to pin otherwise); ``None`` only with ``allow_unsigned_bundles`` (warned)."""
    if config.allow_unsigned_bundles:
        log.warning(UNSIGNED_WARNING)
        return None
    if not config.signing_keys:
        raise ConfigError(
            "core: no signing key pinned (signing_keys), so no bundle can be trusted: "
            f"{HOW_TO_PIN}; or allow_unsigned_bundles: true (development only)"
        )
    try:
        return Keyring.pinned(config.signing_keys, config.revoked)
    except SigningError as exc:
        raise ConfigError(f"core: signing_keys: {exc}") from exc


STATION_CONFIG_NAMES = ("station.yaml", "line.yaml", "station-watch.yaml")
"""The station and line configs a site keeps in its configs folder (``keys`` pins in them)."""


def station_configs_in(folder: Path) -> list[Path]:
    """The station and line configs that exist in ``folder``."""
    return [folder / name for name in STATION_CONFIG_NAMES if (folder / name).is_file()]


@dataclass(frozen=True)
class Trust:
    """A config file's ``core.signing_keys`` and ``core.revoked``, as written in the file;
    ``legacy``: a ``bundle_public_key`` path (pinned by path only)."""

    signing_keys: tuple[PinnedKey, ...] = ()
    revoked: tuple[str, ...] = ()
    legacy: Path | None = None


def _core_section(path: Path) -> dict[str, Any]:
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("core") or {}


def trust_path(config_path: str | Path) -> Path:
    """The file holding a config's pins: its ``core.trust_file`` (relative to the config's
    folder) when it names one, else the config itself."""
    path = Path(config_path)
    named = _core_section(path).get("trust_file") if path.is_file() else None
    return path.parent / named if named else path


def trust_files(configs: list[Path]) -> list[Path]:
    """The files holding ``configs``' pins, each once (the shipped configs share one)."""
    return list(dict.fromkeys(trust_path(config) for config in configs))


def read_trust(config_path: str | Path) -> Trust:
    """The trust lines of a station or line config (of its ``trust_file`` when it names one),
    read from the YAML alone, so a config the station refuses is read too."""
    return _trust_in(trust_path(config_path))


def _trust_in(path: Path) -> Trust:
    if not path.is_file():
        return Trust()
    core = _core_section(path)
    where = f"{path}: core.signing_keys"
    pins = tuple(from_mapping(PinnedKey, pin, where) for pin in core.get("signing_keys") or ())
    legacy = core.get("bundle_public_key")
    return Trust(pins, tuple(core.get("revoked") or ()), Path(legacy) if legacy else None)


TRUST_FILE_HEADER = (
    "# The keys this site's stations trust, by fingerprint, and what is revoked: written by\n"
    "# `inspection keys init|pin|rotate|retire|revoke` (and `make demo`); see docs/security.md.\n"
    "core:\n"
)
_TRUST_KEYS = ("signing_keys", "revoked", "bundle_public_key")


def write_trust(config_path: str | Path, trust: Trust) -> bool:
    """Write ``trust`` into the ``core:`` section of the config's ``trust_path`` (dropping
    ``bundle_public_key``, commenting out ``allow_unsigned_bundles``), editing the YAML text so
    other lines and comments stay; False when the file said this already."""
    path = trust_path(config_path)
    original = path.read_text(encoding="utf-8") if path.is_file() else TRUST_FILE_HEADER
    lines = original.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.split("#")[0].strip() == "core:"), None)
    if start is None:
        raise ConfigError(f"{path}: no 'core:' section to pin the keys in")
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].strip() and lines[i][0] not in " #"),
        len(lines),
    )
    kept: list[str] = []
    at = None
    dropping = False
    for i, line in enumerate(lines):
        indent = len(line) - len(line.lstrip())
        key = line.split("#")[0].strip().partition(":")[0]
        in_core = start < i < end
        if in_core and indent == 2 and key in _TRUST_KEYS:
            at = len(kept) if at is None else at
            dropping = True
            continue
        if dropping and in_core and (indent > 2 or line.lstrip().startswith("- ")):
            continue  # the entries, or a comment continuing the dropped line
        dropping = False
        if in_core and indent == 2 and key == "allow_unsigned_bundles":
            line = "  # " + line.lstrip()
        kept.append(line)
    block = _trust_lines(trust)
    at = start + 1 if at is None else at
    text = "".join(kept[:at] + block + kept[at:])
    if text == original:
        return False
    path.write_text(text, encoding="utf-8")
    return True


def _trust_lines(trust: Trust) -> list[str]:
    def pin(key: PinnedKey) -> str:
        return (
            f"    - {{fingerprint: {json.dumps(key.fingerprint)}, "
            f"path: {json.dumps(str(key.path))}, signs: {key.signs}}}\n"
        )

    revoked = ", ".join(json.dumps(item) for item in trust.revoked)
    return [
        f"  signing_keys:{'' if trust.signing_keys else ' []'}  # by fingerprint, written by "
        "`inspection keys init|pin|rotate|retire`\n",
        *(pin(key) for key in trust.signing_keys),
        f"  revoked: [{revoked}]  # keys (sha256:...), bundles (product/id): `inspection keys revoke`\n",
    ]
